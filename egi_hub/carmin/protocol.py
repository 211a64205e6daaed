"""Every CARMIN 0.3.1 operation as a plan: the requests it makes, how it reads answers.

Why plans: the sync `CarminClient` and the async `AsyncCarminClient` must behave the same,
and the magics follow executions on the async one. So requests are built and answers
parsed here only, without I/O: each operation is a generator that yields `Request`
objects and receives `Response` objects (or has the transport's `CarminError` thrown
in), and returns the operation's result. A transport drives it (`drive` / `adrive` in
the client modules); an operation needing several requests (auto-detecting the dialect
first, creating then playing an execution) is still one plan.

Checksums: the md5 action is optional in CARMIN (VIP lists it in ``unsupportedMethods``
of ``/platform`` and refuses it). `Calls.md5_offered` remembers a platform that does not
offer it, from ``/platform`` or from a refusal, so transfers neither hash nor ask again.

Paths and identifiers are quoted segment by segment: ``.``/``..`` segments and control
characters are refused, so user input can never reach another endpoint of the API.

Answers are hostile input too: each request says how much of its answer may be read
(`egi_hub.carmin.answers`), JSON nested too deeply is refused in one line, and a
redirect is never followed; only an http to https upgrade on the same host is suggested
as the URL to use (another address is the platform's to announce, not an answer's).
Credentials go only where `check_destination` allows (plain http only to loopback, the
Check-in token only to allowed https origins), checked when the platform is chosen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from egi_hub.carmin.answers import MAX_CONTENT, MAX_JSON, MAX_TAIL
from egi_hub.carmin.credentials import Credentials, check_destination, origin_of
from egi_hub.carmin.dialect import DIALECTS, Dialect, detect
from egi_hub.carmin.errors import CarminError, error_from_response
from egi_hub.carmin.models import Execution, ExecutionStatus, Path, Pipeline, Platform
from egi_hub.names import CONTROL

__all__ = ["Calls", "Plan", "Request", "Response", "quote_segments"]

T = TypeVar("T")
_NOT_OFFERED = re.compile(r"not (yet )?(implemented|supported)", re.IGNORECASE)
VIP_NOT_IMPLEMENTED = 8001
LAUNCH_UNKNOWN_HINT = "it may have been launched anyway: check %carmin history before again"


@dataclass(frozen=True)
class Request:
    """One HTTP request of the API: ``path`` is quoted, relative to the platform URL."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    about: str = ""  # "pipeline", "execution", "path": what a 404 is about
    auth: bool = True
    limit: int = MAX_JSON  # bytes of the answer read at most
    tail: bool = False  # keep the last ``limit`` bytes (a log) instead of refusing more


@dataclass(frozen=True)
class Response:
    """What a transport got back."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


Plan = Generator[Request, Response, T]


def quote_segments(value: str, what: str, *, allow_empty: bool = False) -> str:
    """``value``'s ``/``-separated segments, each percent-quoted (UTF-8); `CarminError`
    for an empty, ``.`` or ``..`` segment or a control character."""
    if not isinstance(value, str):
        raise CarminError(None, None, f"the {what} must be text, not {type(value).__name__}")
    if CONTROL.search(value):
        raise CarminError(None, None, f"the {what} {value[:80]!r} has control characters")
    inner = value.strip("/")
    if not inner:
        if allow_empty:
            return ""
        raise CarminError(None, None, f"the {what} is empty")
    segments = inner.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise CarminError(None, None, f"the {what} {value[:80]!r} has an empty, . or .. part")
    return "/".join(quote(s, safe="") for s in segments)


def _id(value: str, what: str) -> str:
    if "/" in str(value):
        raise CarminError(None, None, f"the {what} {str(value)[:80]!r} has a slash")
    return quote_segments(str(value), what)


class Calls:
    """The plans of one platform: its URL, credentials and (detected) dialect."""

    def __init__(self, url: str, credentials: Credentials, dialect: str = "auto") -> None:
        self.url = url
        self.credentials = credentials
        self.header_override: tuple[str, str] | None = None  # from authenticate()
        if dialect == "auto":
            self.dialect: Dialect | None = None
        elif dialect in DIALECTS:
            self.dialect = DIALECTS[dialect]
        else:
            raise CarminError(None, None, f"unknown dialect {dialect!r}", "use auto, carmin or vip")
        check_destination(
            url,
            secret=bool(credentials.api_key) or credentials.token not in (None, False),
            checkin=credentials.token is True,
        )
        self._origin = _origin(url)
        self.md5_offered: bool | None = None  # None: not known yet

    def learn(self, platform: Platform) -> None:
        """What ``/platform`` says: the dialect (when auto-detecting), whether md5 is
        offered (any unsupported method naming md5, e.g. VIP's ``getFileMD5``)."""
        if self.dialect is None:
            self.dialect = detect(platform, self.url)
        if any("md5" in method.lower() for method in platform.unsupported_methods):
            self.md5_offered = False

    def verifies(self, verify: bool) -> bool:
        """Whether a transfer asked to ``verify`` is worth hashing: not where the
        platform is known to give no md5."""
        return verify and self.md5_offered is not False

    # -- what a transport needs -------------------------------------------------------

    def target(self, request: Request) -> str:
        """The absolute URL of ``request``."""
        return self.url + request.path

    def headers(self, request: Request, url: str | None = None) -> dict[str, str]:
        """The request's headers with the credentials, which go to the platform's own
        origin only (never to a returned file's URL on another host)."""
        headers = {"Accept": "application/json", **request.headers}
        elsewhere = url is not None and (CONTROL.search(url) or _origin(url) != self._origin)
        if not request.auth or elsewhere:
            return headers
        if self.header_override:
            headers[self.header_override[0]] = self.header_override[1]
        elif self.credentials.api_key:
            dialect = self.dialect or DIALECTS["carmin"]
            headers[dialect.key_header] = self.credentials.api_key
        bearer = self.credentials.bearer()
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return headers

    # -- reading answers --------------------------------------------------------------

    def check(self, response: Response, about: str = "") -> Response:
        if response.ok:
            return response
        if 300 <= response.status < 400:
            upgrade = self._https_upgrade(response.headers.get("location", ""))
            if upgrade:
                raise CarminError(
                    response.status,
                    None,
                    "the platform redirects to its https:// address (not followed)",
                    f"set CARMIN_URL={upgrade}",
                )
            raise CarminError(
                response.status,
                None,
                "the platform answered with a redirect, not followed",
                "check CARMIN_URL",
            )
        raise error_from_response(response.status, response.body, about)

    def _https_upgrade(self, location: str) -> str | None:
        """The platform URL on https when ``location`` only upgrades http to https on the
        same host (the one redirect worth suggesting), else None."""
        if not location or CONTROL.search(location) or not location.isascii():
            return None
        scheme, host, port = origin_of(location)
        ours = urlsplit(self.url)
        if ours.scheme != "http" or scheme != "https" or not host or host != self._origin[1]:
            return None
        if port is None or "@" in urlsplit(location).netloc:
            return None
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}{'' if port == 443 else f':{port}'}{ours.path}"

    def json(self, response: Response, about: str = "") -> Any:
        self.check(response, about)
        try:
            return loads(response.body)
        except ValueError as e:
            raise CarminError(
                response.status, None, f"the platform's answer is {e}", "is CARMIN_URL right?"
            ) from None

    def model(self, parse: Any, data: Any) -> Any:
        try:
            return parse(data)
        except RecursionError:
            raise CarminError(None, None, "unexpected answer from the platform: too deep") from None
        except (ValueError, TypeError, AttributeError) as e:
            raise CarminError(None, None, f"unexpected answer from the platform: {e}") from None

    @property
    def _ms(self) -> bool | None:
        return self.dialect.dates_in_ms if self.dialect else None

    # -- the dialect ------------------------------------------------------------------

    def ensure_dialect(self) -> Plan[Dialect]:
        if self.dialect is None:
            platform = None
            try:
                response = yield Request("GET", "/platform", auth=False)
                if response.ok:
                    platform = Platform.from_json(loads(response.body))
            except (CarminError, ValueError):
                platform = None
            if platform is None:
                self.dialect = detect(None, self.url)
            else:
                self.learn(platform)
        assert self.dialect is not None
        return self.dialect

    # -- platform and authentication --------------------------------------------------

    def platform(self) -> Plan[Platform]:
        response = yield Request("GET", "/platform", auth=False)
        platform = self.model(Platform.from_json, self.json(response))
        self.learn(platform)
        return platform

    def authenticate(self, username: str, password: str) -> Plan[tuple[str, str]]:
        """``POST /authenticate``: the header and key to use; kept for later requests."""
        check_destination(self.url, secret=True, checkin=False)
        yield from self.ensure_dialect()
        body = {"username": username, "password": password}
        response = yield Request("POST", "/authenticate", json=body, auth=False)
        data = self.json(response)
        if not isinstance(data, dict) or not data.get("httpHeader"):
            raise CarminError(response.status, None, "unexpected answer to authenticate")
        header, value = str(data["httpHeader"]), str(data.get("httpHeaderValue") or "")
        if CONTROL.search(header + value) or not (header + value).isascii():
            raise CarminError(response.status, None, "the platform sent an unusable key")
        self.header_override = (header, value)
        return header, value

    # -- pipelines --------------------------------------------------------------------

    def pipelines(
        self, study: str | None = None, prop: str | None = None, value: str | None = None
    ) -> Plan[list[Pipeline]]:
        yield from self.ensure_dialect()
        params = _params(studyIdentifier=study, property=prop, propertyValue=value)
        data = self.json((yield Request("GET", "/pipelines", params=params)))
        return self.model(lambda d: [Pipeline.from_json(p) for p in _list(d)], data)

    def pipeline(self, identifier: str) -> Plan[Pipeline]:
        yield from self.ensure_dialect()
        path = "/pipelines/" + quote_segments(identifier, "pipeline identifier")
        data = self.json((yield Request("GET", path, about="pipeline")), "pipeline")
        return self.model(Pipeline.from_json, data)

    def boutiques(self, identifier: str) -> Plan[dict[str, Any]]:
        """The pipeline's Boutiques descriptor (VIP: ``?format=boutiques``)."""
        dialect = yield from self.ensure_dialect()
        path = "/pipelines/" + quote_segments(identifier, "pipeline identifier")
        if dialect.boutiques_as_query:
            request = Request("GET", path, params={"format": "boutiques"}, about="pipeline")
        else:
            request = Request("GET", path + "/boutiquesdescriptor", about="pipeline")
        data = self.json((yield request), "pipeline")
        if not isinstance(data, dict) or not isinstance(data.get("inputs", []), list):
            raise CarminError(None, None, f"the descriptor of {identifier} is not Boutiques")
        return data

    # -- executions -------------------------------------------------------------------

    def executions(
        self, study: str | None = None, offset: int | None = None, limit: int | None = None
    ) -> Plan[list[Execution]]:
        yield from self.ensure_dialect()
        params = _params(studyIdentifier=study, offset=offset, limit=limit)
        data = self.json((yield Request("GET", "/executions", params=params)))
        ms = self._ms
        return self.model(
            lambda d: [Execution.from_json(e, milliseconds=ms) for e in _list(d)], data
        )

    def count_executions(self, study: str | None = None) -> Plan[int]:
        yield from self.ensure_dialect()
        request = Request("GET", "/executions/count", params=_params(studyIdentifier=study))
        response = self.check((yield request))
        try:
            return int(loads(response.body))
        except (ValueError, TypeError):
            raise CarminError(
                response.status, None, "the execution count is not a number"
            ) from None

    def execution(self, identifier: str) -> Plan[Execution]:
        yield from self.ensure_dialect()
        path = "/executions/" + _id(identifier, "execution identifier")
        data = self.json((yield Request("GET", path, about="execution")), "execution")
        return self.model(lambda d: Execution.from_json(d, milliseconds=self._ms), data)

    def create_execution(
        self,
        pipeline: str,
        inputs: Mapping[str, Any],
        name: str | None = None,
        *,
        timeout: int | None = None,
        study: str | None = None,
        results_location: str | None = None,
        play: bool = True,
    ) -> Plan[Execution]:
        """``POST /executions``; then ``play`` when the platform left it Initializing."""
        yield from self.ensure_dialect()
        quote_segments(pipeline, "pipeline identifier")
        body: dict[str, Any] = {
            "name": name or pipeline.replace("/", "-"),
            "pipelineIdentifier": pipeline,
            "inputValues": dict(inputs),
        }
        if timeout is not None:
            body["timeout"] = int(timeout)
        if study:
            body["studyIdentifier"] = study
        if results_location:
            body["resultsLocation"] = results_location  # VIP's extension
        request = Request("POST", "/executions", json=body, about="pipeline")
        try:
            data = self.json((yield request), "pipeline")
        except CarminError as e:
            if e.status in (502, 503, 504) or e.status is None:  # it may have got there
                hint = f"{e.hint}; {LAUNCH_UNKNOWN_HINT}" if e.hint else LAUNCH_UNKNOWN_HINT
                raise CarminError(e.status, e.code, e.message, hint) from None
            raise
        execution = self.model(lambda d: Execution.from_json(d, milliseconds=self._ms), data)
        if play and execution.status is ExecutionStatus.INITIALIZING:
            yield from self.play(execution.identifier)
            execution = yield from self.execution(execution.identifier)
        return execution

    def update_execution(
        self, identifier: str, *, name: str | None = None, timeout: int | None = None
    ) -> Plan[None]:
        """``PUT /executions/{id}``: only the name and the timeout can change."""
        current = yield from self.execution(identifier)
        body: dict[str, Any] = {
            "name": current.name if name is None else name,
            "pipelineIdentifier": current.pipeline,
            "inputValues": current.input_values,
        }
        if timeout is not None:
            body["timeout"] = int(timeout)
        path = "/executions/" + _id(identifier, "execution identifier")
        self.check((yield Request("PUT", path, json=body, about="execution")), "execution")

    def _execution_action(
        self, identifier: str, method: str, action: str, *, tail: bool = False
    ) -> Plan[Response]:
        yield from self.ensure_dialect()
        path = "/executions/" + _id(identifier, "execution identifier") + action
        limit = MAX_TAIL if tail else MAX_JSON
        request = Request(method, path, about="execution", limit=limit, tail=tail)
        return self.check((yield request), "execution")

    def play(self, identifier: str) -> Plan[None]:
        yield from self._execution_action(identifier, "PUT", "/play")

    def kill(self, identifier: str) -> Plan[None]:
        yield from self._execution_action(identifier, "PUT", "/kill")

    def delete_execution(self, identifier: str, delete_files: bool = False) -> Plan[None]:
        """The spec's ``DELETE /executions/{id}?deleteFiles=``; VIP's portal takes
        ``PUT /executions/{id}/delete`` (tried first there, the spec's way after a 404,
        405 or "not implemented")."""
        dialect = yield from self.ensure_dialect()
        path = "/executions/" + _id(identifier, "execution identifier")
        if dialect.delete_with_put:
            body = {"deleteFiles": bool(delete_files)}
            response = yield Request("PUT", path + "/delete", json=body, about="execution")
            if response.ok:
                return
            if response.status not in (400, 404, 405, 501):
                self.check(response, "execution")
        params = {"deleteFiles": "true"} if delete_files else {}
        request = Request("DELETE", path, params=params, about="execution")
        self.check((yield request), "execution")

    def results(self, identifier: str) -> Plan[list[Path]]:
        response = yield from self._execution_action(identifier, "GET", "/results")
        data = self.json(response, "execution")
        return self.model(
            lambda d: [Path.from_json(p, milliseconds=self._ms) for p in _list(d)], data
        )

    def stdout(self, identifier: str) -> Plan[str]:
        """The end of the execution's standard output (its last `MAX_TAIL` bytes)."""
        response = yield from self._execution_action(identifier, "GET", "/stdout", tail=True)
        return response.body.decode("utf-8", "replace")

    def stderr(self, identifier: str) -> Plan[str]:
        """The end of the execution's standard error (its last `MAX_TAIL` bytes)."""
        response = yield from self._execution_action(identifier, "GET", "/stderr", tail=True)
        return response.body.decode("utf-8", "replace")

    # -- data -------------------------------------------------------------------------

    def path_request(self, method: str, path: str, limit: int = MAX_JSON, **params: str) -> Request:
        where = "/path/" + quote_segments(path, "platform path", allow_empty=True)
        return Request(method, where, params=params, about="path", limit=limit)

    def list(self, path: str) -> Plan[list[Path]]:
        yield from self.ensure_dialect()
        data = self.json((yield self.path_request("GET", path, action="list")), "path")
        return self.model(
            lambda d: [Path.from_json(p, milliseconds=self._ms) for p in _list(d)], data
        )

    def exists(self, path: str) -> Plan[bool]:
        yield from self.ensure_dialect()
        response = yield self.path_request("GET", path, action="exists")
        if response.status == 404:
            return False
        data = self.json(response, "path")
        if not isinstance(data, dict) or not isinstance(data.get("exists"), bool):
            raise CarminError(response.status, None, "unexpected answer to exists")
        return data["exists"]

    def properties(self, path: str) -> Plan[Path]:
        yield from self.ensure_dialect()
        data = self.json((yield self.path_request("GET", path, action="properties")), "path")
        return self.model(lambda d: Path.from_json(d, milliseconds=self._ms), data)

    def md5(self, path: str) -> Plan[str]:
        yield from self.ensure_dialect()
        data = self.json((yield self.path_request("GET", path, action="md5")), "path")
        value = data.get("md5") if isinstance(data, dict) else None
        if not isinstance(value, str) or len(value) != 32:
            raise CarminError(None, None, "the platform sent no usable md5")
        return value.lower()

    def checksum(self, path: str) -> Plan[str | None]:
        """The platform's md5 of ``path`` to check a transfer against, or None when it
        gives none: not offered (known, or refused now: remembered, never asked again)
        or failed (not remembered)."""
        if self.md5_offered is False:
            return None
        try:
            value = yield from self.md5(path)
        except CarminError as e:
            if _refusal(e):
                self.md5_offered = False
            return None
        self.md5_offered = True
        return value

    def content(self, path: str) -> Plan[bytes]:
        """A small file's bytes in memory, `MAX_CONTENT` at most (`download` streams big
        ones to disk)."""
        yield from self.ensure_dialect()
        request = self.path_request("GET", path, MAX_CONTENT, action="content")
        request.headers["Accept"] = "*/*"
        return self.check((yield request), "path").body

    def mkdir(self, path: str) -> Plan[None]:
        """``PUT /path/...`` without content: a new folder."""
        yield from self.ensure_dialect()
        self.check((yield self.path_request("PUT", path)), "path")

    def delete(self, path: str) -> Plan[None]:
        yield from self.ensure_dialect()
        self.check((yield self.path_request("DELETE", path)), "path")

    def uploaded(self, response: Response) -> Path | None:
        """The `Path` an upload's answer describes, if it describes one."""
        self.check(response, "path")
        try:
            return Path.from_json(loads(response.body), milliseconds=self._ms)
        except ValueError:
            return None


def _refusal(error: CarminError) -> bool:
    """Whether an error says the operation is not offered (not that it failed here: a
    missing path or a folder is no refusal)."""
    if error.status in (405, 501) or error.code == VIP_NOT_IMPLEMENTED:
        return True
    client_side = error.status is not None and 400 <= error.status < 500
    return client_side and bool(_NOT_OFFERED.search(error.message))


def _params(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None and v != ""}


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise ValueError(f"a list was expected, the platform sent {type(data).__name__}")
    return data


def _origin(url: str) -> tuple[str, str, int | None]:
    return origin_of(url)


def loads(body: bytes) -> Any:
    """``body`` as JSON; `ValueError` saying why not (not UTF-8, not JSON, nested too
    deeply: a recursion limit is not a traceback to show)."""
    try:
        return json.loads(body.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not JSON") from None
