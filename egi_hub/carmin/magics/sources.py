"""Where a launch's File inputs come from: a local file, a ``datahub://`` URL, or the
platform itself; and sending the first two to the platform before the launch.

Why a plan first and uploads after: a launch must be refused before anything is sent
when any input is wrong (a missing local file, a bad URL), so `plan_sources` looks at
every File value without I/O towards the platform, and `upload_sources` runs only once
the whole launch was accepted. Rules for a File value, in order:

- ``datahub://space/path`` (any fsspec URL with a registered protocol, in fact):
  opened with fsspec and streamed to the platform, never whole in memory;
- ``file://...``, or a path naming an existing local file: uploaded;
- an absolute path that is not a local file: a platform path, sent as it is;
- ``http(s)://`` URLs: sent as they are (a platform may fetch them);
- anything else (a relative path to no file): refused, naming the parameter.

Uploads go to a folder of their own per launch below the upload folder (default
``/vip/Home/egi-hub-uploads``, ``$CARMIN_UPLOAD_DIR`` to change it), so a relaunch never
replaces a file a running execution is reading.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from egi_hub.carmin.client import CarminClient
from egi_hub.carmin.errors import CarminError, CarminInputError
from egi_hub.carmin.transfer import Progress
from egi_hub.names import CONTROL

__all__ = [
    "DEFAULT_UPLOAD_DIR",
    "Source",
    "file_inputs",
    "plan_sources",
    "upload_dir",
    "upload_sources",
]

DEFAULT_UPLOAD_DIR = "/vip/Home/egi-hub-uploads"


@dataclass(frozen=True)
class Source:
    """One File value to send: ``value`` as given, ``kind`` "local" or "fsspec",
    ``where`` the local path or the URL, ``name`` the file name on the platform."""

    parameter: str
    value: str
    kind: str
    where: str
    name: str


def upload_dir(environ: Mapping[str, str] = os.environ) -> str:
    """The platform folder receiving uploads: ``$CARMIN_UPLOAD_DIR`` or the default."""
    chosen = (environ.get("CARMIN_UPLOAD_DIR") or DEFAULT_UPLOAD_DIR).strip()
    if not chosen.startswith("/") or CONTROL.search(chosen):
        raise CarminError(None, None, f"CARMIN_UPLOAD_DIR {chosen[:80]!r}: not a platform path")
    return "/" + chosen.strip("/")


def file_inputs(descriptor: Mapping[str, Any]) -> set[str]:
    """The ids of a Boutiques descriptor's File inputs."""
    return {
        i["id"]
        for i in descriptor.get("inputs") or []
        if isinstance(i, Mapping) and i.get("type") == "File" and isinstance(i.get("id"), str)
    }


def _name(parameter: str, name: str) -> str:
    name = name.rstrip("/").rsplit("/", 1)[-1]
    if name in ("", ".", "..") or CONTROL.search(name):
        raise CarminInputError(parameter, f"parameter {parameter!r}: no usable file name")
    return name


def _fsspec_known(protocol: str) -> bool:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        return False
    return protocol in fsspec.available_protocols()


def _classify(parameter: str, value: str, cwd: Path) -> Source | None:
    """The `Source` to upload for ``value``, or None when it is sent as it is."""
    scheme = urlsplit(value).scheme.lower() if "://" in value else ""
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        local = Path(unquote(urlsplit(value).path))
        if not local.is_file():
            raise CarminInputError(parameter, f"parameter {parameter!r}: no local file {local}")
        return Source(parameter, value, "local", str(local), _name(parameter, local.name))
    if scheme:
        if not _fsspec_known(scheme):
            raise CarminInputError(
                parameter, f"parameter {parameter!r}: no filesystem for {scheme}:// URLs here"
            )
        if not urlsplit(value).netloc and not urlsplit(value).path.strip("/"):
            raise CarminInputError(parameter, f"parameter {parameter!r}: {value!r} names no file")
        return Source(parameter, value, "fsspec", value, _name(parameter, urlsplit(value).path))
    local = Path(value).expanduser()
    local = local if local.is_absolute() else cwd / local
    if local.is_file():
        return Source(parameter, value, "local", str(local), _name(parameter, local.name))
    if value.startswith("/"):
        return None  # a platform path
    if local.exists():
        raise CarminInputError(parameter, f"parameter {parameter!r}: {value} is not a file")
    raise CarminInputError(
        parameter,
        f"parameter {parameter!r}: no local file {value!r} (platform paths start with /)",
    )


def plan_sources(
    inputs: Mapping[str, Any], files: set[str], cwd: str | os.PathLike[str] | None = None
) -> list[Source]:
    """The File values of ``inputs`` (already checked) that must be uploaded first;
    `CarminInputError` naming the parameter for one that cannot be."""
    here = Path(cwd) if cwd is not None else Path.cwd()
    planned: list[Source] = []
    for parameter, value in inputs.items():
        if parameter not in files:
            continue
        for item in value if isinstance(value, list) else [value]:
            source = _classify(parameter, str(item), here)
            if source is not None:
                planned.append(source)
    return planned


def _launch_folder(base: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{base}/{stamp}-{secrets.token_hex(3)}"


def _ensure_folder(client: CarminClient, path: str) -> None:
    parts = [p for p in path.strip("/").split("/") if p]
    for depth in range(1, len(parts) + 1):
        here = "/" + "/".join(parts[:depth])
        if not client.exists(here):
            client.mkdir(here)


def upload_sources(
    client: CarminClient,
    inputs: Mapping[str, Any],
    sources: list[Source],
    base: str,
    progress: Callable[[Source], Progress] | None = None,
) -> dict[str, Any]:
    """Upload ``sources`` to a new folder below ``base``; ``inputs`` with their values
    replaced by the platform paths. ``progress(source)`` gives each upload's callback."""
    if not sources:
        return dict(inputs)
    folder = _launch_folder(base)
    _ensure_folder(client, folder)
    names: dict[str, int] = {}
    sent: dict[tuple[str, str], str] = {}
    for source in sources:
        key = (source.parameter, source.value)
        if key in sent:
            continue
        count = names.get(source.name, 0)
        names[source.name] = count + 1
        name = source.name if not count else f"{count + 1}-{source.name}"
        remote = f"{folder}/{name}"
        callback = progress(source) if progress else None
        if source.kind == "local":
            client.upload(source.where, remote, progress=callback)
        else:
            import fsspec

            try:
                with fsspec.open(source.where, "rb") as f:
                    client.upload(f, remote, progress=callback)
            except (OSError, ValueError) as e:
                raise CarminError(None, None, f"{source.where}: cannot read it ({e})") from None
        sent[key] = remote
    resolved: dict[str, Any] = {}
    for parameter, value in inputs.items():
        if isinstance(value, list):
            resolved[parameter] = [sent.get((parameter, str(v)), v) for v in value]
        else:
            resolved[parameter] = sent.get((parameter, str(value)), value)
    return resolved
