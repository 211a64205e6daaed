"""`CarminStandin`: a running CARMIN server stand-in, its settings and its test hooks."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .data import DataArea, DataError
from .executions import Engine, Execution
from .pipelines import Pipeline, load_pipelines
from .server import ApiError, RecordedRequest, Server, StandinHooks, start_server

PIPELINES_DIR = Path(__file__).resolve().parents[1] / "carmin_pipelines"
VIP_CONTENT_LIMIT = 15 * 1000 * 1000  # VIP: about 15 MB of file content a request


@dataclass
class CarminStandin:
    """A running stand-in (`start_carmin_standin`). ``url`` is the API's base (what a
    client's ``CARMIN_URL`` is), ``portal_url`` the site (what ``vip-client``'s
    ``vip_portal_url`` is: it appends ``/rest/``)."""

    dialect: str
    root: Path
    api_keys: dict[str, str]  # key -> user
    passwords: dict[str, str]  # user -> password, for /authenticate
    bearer_tokens: dict[str, str]  # OIDC access token -> user
    max_running: int | None
    content_limit: int | None
    home: str
    data: DataArea
    engine: Engine
    pipelines: dict[str, Pipeline]
    scratch: Path
    hooks: StandinHooks = field(default_factory=StandinHooks)
    server: Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def portal_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.portal_url}/rest"

    def stop(self) -> None:
        """Kill running executions, stop serving, release stalled downloads."""
        self.hooks.released.set()
        self.engine.stop_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- test hooks --------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, path_contains: str | None = None) -> None:
        """Answer the next ``n`` requests (whose path holds ``path_contains``, if given)
        with ``status`` and an error body, without doing anything."""
        with self.hooks.lock:
            self.hooks.fail.extend([(status, path_contains)] * n)

    def cut_next_download(self, after: int) -> None:
        """The next content download sends its headers (full length), ``after`` bytes,
        then closes the connection."""
        with self.hooks.lock:
            self.hooks.cut.append(after)

    def stall_next_download(self, after: int) -> None:
        """The next content download sends ``after`` bytes, then waits until
        `release_stalled` (or `stop`) and closes the connection."""
        with self.hooks.lock:
            self.hooks.released.clear()
            self.hooks.stall.append(after)

    def release_stalled(self) -> None:
        self.hooks.released.set()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received (method, path, headers, body when at most 1 MiB)."""
        with self.hooks.lock:
            return list(self.hooks.requests)

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and path_contains in unquote(r.path)
        )

    def clear_requests(self) -> None:
        with self.hooks.lock:
            self.hooks.requests.clear()

    # -- direct access for tests -----------------------------------------------------
    def put_file(self, platform_path: str, content: bytes) -> None:
        local = self.data.local(platform_path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)

    def read_file(self, platform_path: str) -> bytes:
        return self.data.existing(platform_path).read_bytes()

    def execution(self, ident: str) -> Execution:
        with self.engine.lock:
            return self.engine.executions[ident]

    # -- shared by the operations ------------------------------------------------
    def content_url(self, platform_path: str) -> str:
        return f"{self.url}/path{quote(platform_path)}?action=content"

    def platform_path_of(self, value: str, field_name: str) -> str:
        """A File input's platform path: given as one, or as this platform's
        ``/path/...`` URL; it must exist."""
        from .api import fail

        prefix = f"{self.url}/path/"
        if value.startswith(prefix):
            value = unquote(urlsplit(value).path[len("/rest/path") :])
        if not value.startswith("/"):
            raise fail(self, "invalid_input", f"Input field '{field_name}' is not a platform path")
        try:
            if self.data.exists(value):
                return self.data.normal(value)
        except DataError as e:  # a hostile path
            raise fail(self, "invalid_input", f"Input field '{field_name}': {e}") from None
        raise fail(self, "invalid_input", f"Input field '{field_name}': no such file {value}")

    def path_json(self, platform_path: str, execution_id: str | None = None) -> dict[str, Any]:
        props = self.data.properties(platform_path)
        if self.dialect == "vip":
            out = {"path": props.pop("path"), "exists": True} | props
        else:
            out = {"platformPath": props.pop("path")} | props
        if execution_id is not None:
            out["executionId"] = execution_id
        return out

    def pipeline_properties(self) -> list[str]:
        return sorted({k for p in self.pipelines.values() for k in p.properties})

    def platform_properties(self) -> dict[str, Any]:
        from .api import ERRORS

        vip = self.dialect == "vip"
        codes = sorted({(v[2] if vip else v[1]) for v in ERRORS.values()})
        props: dict[str, Any] = {
            "platformName": "VIP" if vip else "CARMIN stand-in",
            "APIErrorCodesAndMessages": [
                {"errorCode": c, "errorMessage": "see the answer's errorMessage"} for c in codes
            ],
            "supportedModules": ["Processing", "Data"],
            "defaultLimitListExecutions": 500,
            "email": "support@example.org",
            "platformDescription": "A CARMIN server stand-in for egi-hub's tests",
            "minAuthorizedExecutionTimeout": 0,
            "maxAuthorizedExecutionTimeout": 0,
            "defaultExecutionTimeout": 0,
            "unsupportedMethods": ["playExecution", "getFileMD5"] if vip else [],
            "studiesSupport": not vip,
            "supportedAPIVersion": "0.3" if vip else "0.3.1",
            "supportedPipelineProperties": self.pipeline_properties(),
        }
        if vip:
            props["supportedTransferProtocols"] = ["HTTP"]
            props["maxSizeDirectTransfer"] = self.content_limit
        return props


def start_carmin_standin(
    tmp: Path,
    *,
    dialect: str = "carmin",
    api_keys: dict[str, str] | None = None,
    passwords: dict[str, str] | None = None,
    bearer_tokens: dict[str, str] | None = None,
    pipelines: list[Path] | None = None,
    max_running: int | None = None,
    content_limit: int | str | None = "default",
) -> CarminStandin:
    """Serve a CARMIN 0.3.1 platform on 127.0.0.1 (a free port) with its data and work
    folders below ``tmp``.

    ``dialect``: ``"carmin"`` (the spec) or ``"vip"`` (VIP's known differences).
    ``api_keys``: key -> user (default ``{"standin-key": "alice"}``); ``passwords``:
    user -> password for ``/authenticate`` (default alice's is ``"alice-password"``);
    ``bearer_tokens``: OIDC access token -> user, taken as ``Authorization: Bearer``.
    ``pipelines``: Boutiques descriptor files (default: ``tests/carmin_pipelines/*.json``).
    ``max_running``: running executions a user may have (then 2001 / 429).
    ``content_limit``: bytes of content a request (default: 15 MB for VIP, none else).
    """
    if dialect not in ("carmin", "vip"):
        raise ValueError(f"unknown dialect {dialect!r}: carmin or vip")
    api_keys = dict(api_keys or {"standin-key": "alice"})
    users = set(api_keys.values())
    passwords = dict(passwords or {u: f"{u}-password" for u in users})
    if content_limit == "default":
        content_limit = VIP_CONTENT_LIMIT if dialect == "vip" else None
    assert content_limit is None or isinstance(content_limit, int)
    home = "/vip/Home"
    data = DataArea(tmp / "data")
    for part in ("/vip", home):
        if not data.exists(part):
            data.mkdir(part)
    scratch = tmp / "scratch"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    descriptors = pipelines if pipelines is not None else sorted(PIPELINES_DIR.glob("*.json"))
    standin = CarminStandin(
        dialect=dialect,
        root=tmp,
        api_keys=api_keys,
        passwords=passwords,
        bearer_tokens=dict(bearer_tokens or {}),
        max_running=max_running,
        content_limit=content_limit,
        home=home,
        data=data,
        engine=Engine(data, tmp / "work", dialect),
        pipelines=load_pipelines([Path(p) for p in descriptors], dialect),
        scratch=scratch,
    )
    standin.server = start_server(standin)
    return standin


__all__ = ["ApiError", "CarminStandin", "start_carmin_standin"]
