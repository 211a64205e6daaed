"""The storage mounts of this notebook server: the credential keeper and `filesystem()`.

In a notebook::

    from egi_hub.singleuser.mounts import filesystem, load_mounts
    [m.name for m in load_mounts()]          # e.g. ['scratch', 'datahub']
    fs = filesystem("scratch")               # an fsspec filesystem rooted at the mount
    fs.ls("")

The hub decides which mounts a server gets (by the user's VOs and the profile) and with
which credentials; it answers them, for this server's user only, at
``GET /hub/api/egi/mounts`` (the "mounts document", see ``docs/user/storage.md``). This
module's Jupyter server extension (enabled for every server by ``egi_hub/jupyter_config``,
as the token keeper is) asks at start and again at the document's ``refresh_at`` (at
least every 15 minutes), so credentials are renewed in a running server without a
restart. It writes, each file replaced atomically and readable by the user only:

- ``$EGI_MOUNTS_FILE`` (the hub sets ``~/.egi/servers/<server>/mounts.json``; default
  ``~/.egi/mounts.json``): the document, checked entry by entry (an entry that is not
  valid becomes an error entry saying why, never silently missing), without secrets;
- per mount, the credentials its filesystem re-reads when they change: an S3 credential
  document ``$EGI_STORAGE_DIR/<name>.json`` (`egi_hub.singleuser.s3`) and a DataHub REST
  token ``$EGI_STORAGE_DIR/<name>.token`` (`egi_hub.singleuser.datahub`);
  ``$EGI_STORAGE_DIR`` defaults to ``storage`` beside the document.

Secrets are kept in the credential files only: the stored document names each mount's
settings without its key, secret, session token or token (`store_document`), so the
home volume, which backups and NFS-backed homes copy, holds no credential unless the
storage folder is on it. On Kubernetes the spawner puts ``$EGI_STORAGE_DIR`` on a
memory-backed volume (``emptyDir: {medium: Memory}``); on one machine it stays under
``~/.egi`` and the keeper removes the credential files when the server stops
(`remove_credentials`, at the process's normal exit; a killed process cannot).

Every path is per server: two named servers of one user share a home folder, and a keeper
removes the credential files its document no longer names. The extension exports both
variables, expanded, so the keeper, `filesystem()`, the contents manager (and its
checkpoints, beside the document) and kernels agree on one folder.

Why files and not the hub API from every kernel: kernels (and `filesystem()`) then need
neither the server's API token nor the network to the hub, and a renewed credential
reaches every open filesystem by its file. The file browser shows the mounts through
`egi_hub.singleuser.contents`.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MOUNTS_FILE",
    "KINDS",
    "MountEntry",
    "MountNotFoundError",
    "MountUnavailableError",
    "MountsDocument",
    "MountsKeeper",
    "checkpoints_dir",
    "export_paths",
    "filesystem",
    "find_mount",
    "load_mounts",
    "mounts_file",
    "parse_document",
    "read_only_dirfs",
    "remove_credentials",
    "store_document",
    "write_private",
]

DEFAULT_MOUNTS_FILE = "~/.egi/mounts.json"
KINDS = ("s3", "datahub", "nfs")
PERIOD = 15 * 60.0  # without refresh_at: ask again every 15 minutes (the contract)
MIN_WAIT, MAX_BACKOFF = 5.0, 300.0
MAX_MOUNTS, MAX_ERROR = 100, 500

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,100}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT, _OPT_TEXT, _OPT_NUM = "text", "optional text", "optional number"
# The kind objects of the contract: field -> what it must be.
_FIELDS: dict[str, dict[str, str]] = {
    "s3": {
        "endpoint_url": _TEXT,
        "bucket": _TEXT,
        "key": _TEXT,
        "secret": _TEXT,
        "prefix": _OPT_TEXT,
        "region": _OPT_TEXT,
        "session_token": _OPT_TEXT,
        "expires_at": _OPT_NUM,
    },
    "datahub": {
        "onezone_url": _TEXT,
        "token": _TEXT,
        "expires_at": _OPT_NUM,
        "spaces": "optional list of text",
    },
    "nfs": {"server": _TEXT, "export": _TEXT, "local_path": _OPT_TEXT},
}
#: The fields that are credentials: kept in the credential files, never in the stored
#: document (`store_document`), so optional when a stored document is read back.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "s3": ("key", "secret", "session_token"),
    "datahub": ("token",),
}


class MountNotFoundError(LookupError):
    """No mount of that name in this server's mounts document."""


class MountUnavailableError(OSError):
    """The mount exists but the hub could not set it up (its error entry says why)."""


def mounts_file() -> Path:
    """Where this server's mounts document is kept, as an absolute path.

    ``$EGI_MOUNTS_FILE`` (the hub sets ``~/.egi/servers/<server>/mounts.json``, one folder
    per server, so named servers of one user never overwrite each other's files), else
    ``~/.egi/mounts.json``. Its folder also holds the server's credential files (unless
    ``$EGI_STORAGE_DIR`` says otherwise) and the checkpoints of files on mounts.
    """
    value = os.environ.get("EGI_MOUNTS_FILE") or DEFAULT_MOUNTS_FILE
    return Path(os.path.abspath(os.path.expanduser(value)))


def _storage_dir() -> Path:
    from egi_hub.singleuser.s3 import storage_dir

    return storage_dir()


def checkpoints_dir(path: Path | None = None) -> Path:
    """Where checkpoints of files on mounts go: ``checkpoints`` beside the mounts document
    ``path`` (default: this server's), so each server keeps its own."""
    return (path or mounts_file()).parent / "checkpoints"


def export_paths() -> tuple[Path, Path]:
    """Put this server's (mounts file, storage dir) into the environment, expanded.

    The keeper, `filesystem()` and the contents manager all read them from there, and
    kernels started by the server inherit them: a literal ``~`` or a relative path from
    the hub would otherwise mean something else in a kernel's working directory (and
    ``datahub://`` token files are opened as given).
    """
    path, storage = mounts_file(), _storage_dir()
    os.environ["EGI_MOUNTS_FILE"] = str(path)
    os.environ["EGI_STORAGE_DIR"] = str(storage)
    return path, storage


def datahub_token_file(name: str, storage: Path) -> Path:
    """Where a DataHub mount's token is kept (0600, renewed by the keeper)."""
    return storage / f"{name}.token"


def export_datahub_defaults(doc: MountsDocument, storage: Path) -> None:
    """Let ``datahub://`` URLs with no options work in kernels: this server's first
    available DataHub mount (its Onezone, its token file, renewed by the keeper, its
    spaces) in ``EGI_DATAHUB_DEFAULTS``, which `DatahubFileSystem` reads only when given
    no address and no token. Kernels started by this server from now on inherit it. No
    secret goes in the environment: the token stays in its 0600 file."""
    from egi_hub.singleuser.datahub import DEFAULTS_ENV

    for entry in doc.mounts:
        if entry.kind == "datahub" and entry.error is None and entry.settings:
            defaults = {
                "onezone_url": entry.settings.get("onezone_url"),
                "token_file": str(datahub_token_file(entry.name, storage)),
            }
            if entry.settings.get("spaces"):
                defaults["spaces"] = list(entry.settings["spaces"])
            os.environ[DEFAULTS_ENV] = json.dumps(defaults)
            return
    os.environ.pop(DEFAULTS_ENV, None)  # no DataHub mount (any more)


@dataclass(frozen=True)
class MountEntry:
    """One mount of the document: its kind's settings, or the error that replaced them."""

    name: str
    kind: str
    path: str  # absolute, normalised: "/s3/scratch"
    read_only: bool = False
    settings: Mapping[str, Any] | None = field(default=None, repr=False)  # holds secrets
    error: str | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        """The path's segments: ``("s3", "scratch")``."""
        return tuple(self.path.strip("/").split("/"))

    def to_json(self, *, secrets: bool = True) -> dict[str, Any]:
        """The entry as the document has it (``secrets=False``: credentials left out)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "path": self.path,
            "read_only": self.read_only,
        }
        if self.error is not None:
            out["error"] = self.error
        else:
            hidden = () if secrets else SECRET_FIELDS.get(self.kind, ())
            out[self.kind] = {k: v for k, v in (self.settings or {}).items() if k not in hidden}
        return out


@dataclass(frozen=True)
class MountsDocument:
    """The checked document: its mounts (in the hub's order) and when to ask again."""

    mounts: tuple[MountEntry, ...] = ()
    refresh_at: float | None = None

    def to_json(self, *, secrets: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"mounts": [m.to_json(secrets=secrets) for m in self.mounts]}
        if self.refresh_at is not None:
            out["refresh_at"] = self.refresh_at
        return out


def _clean_error(text: str) -> str:
    text = _CONTROL.sub(" ", text).strip() or "the hub could not set this mount up"
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _check_path(value: Any) -> str | None:
    """A mount path as ``/a/b`` (segments of letters, digits, ``._-``; no ``.``/``..``)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 255:
        return None
    parts = value.strip("/").split("/")
    if not parts or any(not _SEGMENT.fullmatch(p) or p in (".", "..") for p in parts):
        return None
    return "/" + "/".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _settings_problem(kind: str, obj: Any, stored: bool = False) -> str | None:
    """Why ``obj`` is not a valid kind object (names the field, never its value);
    ``stored``: a document as `store_document` wrote it (no secret fields)."""
    if not isinstance(obj, Mapping):
        return f"its {kind!r} description is not an object"
    spec = _FIELDS[kind]
    unknown = sorted(str(k)[:40] for k in obj if k not in spec)
    if unknown:
        return f"unknown field {unknown[0]!r} in its {kind!r} description"
    for key, what in spec.items():
        value = obj.get(key)
        if value is None and (
            what.startswith("optional") or (stored and key in SECRET_FIELDS.get(kind, ()))
        ):
            continue
        if what.endswith("number"):
            ok = _is_number(value)
        elif what.endswith("list of text"):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str) and (what.startswith("optional") or bool(value))
        if not ok:
            return f"field {key!r} of its {kind!r} description is missing or not {what}"
    url_key = {"s3": "endpoint_url", "datahub": "onezone_url"}.get(kind)
    if url_key and urlsplit(obj[url_key]).scheme not in ("http", "https"):
        return f"field {url_key!r} of its {kind!r} description is not an http(s) URL"
    return None


def _overlaps(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def parse_document(data: Any, *, stored: bool = False) -> MountsDocument:
    """Check a mounts document from the hub (hostile input) and build a `MountsDocument`
    (``stored``: one `store_document` wrote, whose entries have no secret fields).

    An entry without a usable name, kind or path, a duplicate name, or a path inside
    another mount's path is left out (logged by name): it could not be shown at a place of
    its own. An entry whose kind object is not valid becomes an error entry that says which
    field, so the user sees the mount with a reason rather than not at all.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("mounts"), list):
        raise ValueError("the mounts document is not an object with a 'mounts' list")
    refresh_at = data.get("refresh_at")
    if refresh_at is not None and not _is_number(refresh_at):
        raise ValueError("the mounts document's 'refresh_at' is not a number")
    entries: list[MountEntry] = []
    for raw in data["mounts"][:MAX_MOUNTS]:
        if not isinstance(raw, Mapping):
            log.warning("Mounts document: an entry that is not an object was left out")
            continue
        name, kind, path = raw.get("name"), raw.get("kind"), _check_path(raw.get("path"))
        label = repr(name[:63]) if isinstance(name, str) else "(unnamed)"
        if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
            log.warning("Mounts document: mount %s has an unusable name; left out", label)
            continue
        if kind not in KINDS or path is None:
            log.warning("Mounts document: mount %s has an unknown kind or bad path", label)
            continue
        parts = tuple(path.strip("/").split("/"))
        clash = [e.name for e in entries if e.name == name or _overlaps(e.parts, parts)]
        if clash:
            log.warning("Mounts document: mount %s clashes with %r; left out", label, clash[0])
            continue
        read_only = raw.get("read_only", False)
        error = raw.get("error")
        problem = None
        if not isinstance(read_only, bool):
            problem, read_only = "its 'read_only' is not true or false", True
        elif error is not None:
            problem = error if isinstance(error, str) else "the hub reported an error"
        else:
            problem = _settings_problem(kind, raw.get(kind), stored)
            if problem is not None:
                problem = f"the hub sent an invalid description of this mount: {problem}"
        if problem is not None:
            entries.append(MountEntry(name, kind, path, read_only, None, _clean_error(problem)))
        else:
            settings = {k: v for k, v in raw[kind].items() if v is not None}
            entries.append(MountEntry(name, kind, path, read_only, settings))
    return MountsDocument(tuple(entries), refresh_at)


def load_mounts(path: str | os.PathLike | None = None) -> list[MountEntry]:
    """This server's mounts, from the mounts document (empty if there is none yet)."""
    path = Path(path) if path is not None else mounts_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        # The JSON error would quote the document, credentials included.
        raise ValueError(f"the mounts document {path} is not JSON") from None
    return list(parse_document(data, stored=True).mounts)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by its owner only.

    A reader sees the old file or the new one, never half of one: the text goes to a
    0600 temporary file beside it, is flushed to disk, then renamed over ``path``.
    """
    missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    for directory in reversed(missing):  # each new folder private, not only the last one
        directory.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _s3_document(entry: MountEntry) -> dict[str, Any]:
    """The `egi_hub.singleuser.s3` credential document of an S3 entry (checked there)."""
    from egi_hub.singleuser.s3 import DEFAULT_REGION, S3MountCredentials

    s = entry.settings or {}
    creds = S3MountCredentials(
        name=entry.name,
        endpoint_url=s["endpoint_url"],
        bucket=s["bucket"],
        key=s["key"],
        secret=s["secret"],
        read_only=entry.read_only,
        region=s.get("region") or DEFAULT_REGION,
        session_token=s.get("session_token"),
        expires_at=s.get("expires_at"),
    )
    return creds.to_document()


def store_document(
    doc: MountsDocument, path: Path | None = None, storage: Path | None = None
) -> MountsDocument:
    """Write the per-mount credential files, then the document; returns what was written.

    Credential files come first so a reader of the document finds them. An S3 entry whose
    credentials `egi_hub.singleuser.s3` refuses becomes an error entry. Credential files of
    mounts that are gone (or now in error) are removed.
    """
    from egi_hub.singleuser.s3 import S3CredentialsError

    path = path or mounts_file()
    storage = storage or _storage_dir()
    previous = {m.name for m in _safe_load(path)}
    written: list[MountEntry] = []
    for entry in doc.mounts:
        try:
            if entry.error is None and entry.kind == "s3":
                write_private(storage / f"{entry.name}.json", json.dumps(_s3_document(entry)))
            elif entry.error is None and entry.kind == "datahub":
                write_private(datahub_token_file(entry.name, storage), entry.settings["token"])
        except S3CredentialsError as e:
            entry = MountEntry(entry.name, entry.kind, entry.path, entry.read_only, None, str(e))
        written.append(entry)
    keep = {(m.name, m.kind) for m in written if m.error is None}
    for name in previous | {m.name for m in written}:
        for suffix, kind in ((".json", "s3"), (".token", "datahub")):
            if (name, kind) not in keep:
                (storage / f"{name}{suffix}").unlink(missing_ok=True)
    result = MountsDocument(tuple(written), doc.refresh_at)
    write_private(path, json.dumps(result.to_json(secrets=False), indent=1))
    return result


def remove_credentials(storage: Path | None = None) -> list[Path]:
    """Remove this server's credential files (the server is stopping); returns them.

    In the storage folder: every ``<mount>.json`` and ``<mount>.token`` and the keeper's
    temporary files, and the folder itself once empty; nothing else (a user's own files
    there stay). The stored document holds no secret and stays, as do the checkpoints
    beside it (user data). Symbolic links are removed, never followed.
    """
    storage = storage or _storage_dir()
    removed: list[Path] = []
    try:
        names = sorted(os.listdir(storage))
    except OSError:  # none (no mounts, or removed already)
        return removed
    for name in names:
        stem, dot, suffix = name.rpartition(".")
        ours = (dot and suffix in ("json", "token") and _NAME.fullmatch(stem)) or (
            name.startswith(".") and name.endswith(".tmp")
        )
        target = storage / name
        if ours and (target.is_symlink() or target.is_file()):
            try:
                target.unlink()
                removed.append(target)
            except OSError as e:
                log.warning("Could not remove the credential file %s: %s", target, e.strerror)
    try:
        storage.rmdir()
    except OSError:
        pass  # not empty (a user's own file), or gone
    return removed


def _safe_load(path: Path) -> list[MountEntry]:
    try:
        return load_mounts(path)
    except ValueError:
        return []


class MountsKeeper:
    """Fetch this server's mounts document from the hub and keep the files current."""

    def __init__(
        self, api_url: str, api_token: str, path: Path, storage: Path | None = None
    ) -> None:
        self.url = api_url.rstrip("/") + "/egi/mounts"
        server = os.environ.get("JUPYTERHUB_SERVER_NAME")
        if server:
            from urllib.parse import quote

            self.url += "?server=" + quote(server, safe="")
        self.api_token = api_token
        self.path = path
        self.storage = storage

    async def get(self) -> Any | None:
        """The hub's answer as JSON; None if the hub offers no mounts to this server."""
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        try:
            response = await AsyncHTTPClient().fetch(
                self.url,
                headers={"Authorization": f"token {self.api_token}"},
                request_timeout=30,
            )
        except HTTPClientError as e:
            if e.code in (403, 404):
                return None
            raise
        try:
            return json.loads(response.body)
        except ValueError:
            raise ValueError("the hub's mounts answer is not JSON") from None

    async def fetch(self) -> MountsDocument | None:
        """One round: fetch, check and store the document; None if the hub has none."""
        data = await self.get()
        if data is None:
            return None
        doc = parse_document(data)
        stored = await asyncio.to_thread(store_document, doc, self.path, self.storage)
        export_datahub_defaults(stored, self.storage or _storage_dir())
        return stored

    @staticmethod
    def wait_after(doc: MountsDocument, now: float | None = None) -> float:
        """Seconds until the next fetch: until ``refresh_at``, within [5 s, 15 min]."""
        if doc.refresh_at is None:
            return PERIOD
        now = time.time() if now is None else now
        return min(PERIOD, max(MIN_WAIT, doc.refresh_at - now))

    @staticmethod
    def backoff(failures: int) -> float:
        """Seconds to wait after ``failures`` failed rounds in a row: 5, 10, 20 … 300."""
        return min(MAX_BACKOFF, MIN_WAIT * 2 ** max(0, failures - 1))

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                doc = await self.fetch()
            except Exception as e:  # the hub restarting, a network hiccup: try again
                failures += 1
                log.warning("Could not fetch the storage mounts from the hub: %s", e)
                await asyncio.sleep(self.backoff(failures))
                continue
            failures = 0
            if doc is None:
                log.info("The hub offers no storage mounts to this server")
                return
            await asyncio.sleep(self.wait_after(doc))


# -- filesystems -------------------------------------------------------------------------


def find_mount(name: str, mounts: list[MountEntry] | None = None) -> MountEntry:
    """The entry named ``name``; `MountNotFoundError` listing the names there are."""
    mounts = load_mounts() if mounts is None else mounts
    for entry in mounts:
        if entry.name == name:
            return entry
    names = ", ".join(repr(m.name) for m in mounts) or "none"
    raise MountNotFoundError(f"no storage mount named {name!r} in this server (mounts: {names})")


def filesystem(name: str, mounts: list[MountEntry] | None = None, **options: Any) -> Any:
    """The fsspec filesystem of mount ``name``, rooted at the mount (paths are relative).

    S3: `egi_hub.singleuser.s3.S3Mount` from the mount's credential document (under the
    mount's ``prefix``, if any); DataHub: `egi_hub.singleuser.datahub.DatahubFileSystem`
    reading the mount's token file (so a renewed token is used), one directory per space
    (only the mount's ``spaces``, when the hub names them);
    NFS: the local directory (``local_path``, else the mount's path). ``options`` go to the
    filesystem's constructor (e.g. ``verify=`` for DataHub).
    """
    entry = find_mount(name, mounts)
    if entry.error is not None:
        raise MountUnavailableError(f"storage mount {name!r} is not available: {entry.error}")
    settings = entry.settings or {}
    from fsspec.implementations.dirfs import DirFileSystem

    if entry.kind == "s3":
        from egi_hub.singleuser.s3 import check_key, open_mount

        fs = open_mount(name, _storage_dir(), **options)
        prefix = check_key(settings.get("prefix") or "")
        return _prefixed_dirfs()(path=prefix, fs=fs) if prefix else fs
    if entry.kind == "datahub":
        from egi_hub.singleuser.datahub import DatahubFileSystem

        token_file = datahub_token_file(name, _storage_dir())
        return DatahubFileSystem(
            onezone_url=settings["onezone_url"],
            token_file=str(token_file),
            spaces=settings.get("spaces"),  # the mount's filter (None: every space)
            **options,
        )
    local = settings.get("local_path") or entry.path
    if not PurePosixPath(local).is_absolute():
        raise MountUnavailableError(f"storage mount {name!r}: its local path is not absolute")
    from fsspec.implementations.local import LocalFileSystem

    cls = read_only_dirfs() if entry.read_only else DirFileSystem
    return cls(path=local, fs=LocalFileSystem(), **options)


@functools.cache
def _prefixed_dirfs() -> type:
    """A `DirFileSystem` under an S3 prefix that checks each key before joining it.

    The S3 layer checks the joined key too; checking here as well means the message names
    the user's path, and ``prefix/../other`` can never be formed.
    """
    from fsspec.implementations.dirfs import DirFileSystem

    from egi_hub.singleuser.s3 import check_key

    def _join(self: Any, path: Any) -> Any:
        if isinstance(path, str):
            path = check_key(path)
        return DirFileSystem._join(self, path)

    return type("PrefixedS3Mount", (DirFileSystem,), {"_join": _join, "cachable": False})


@functools.cache
def read_only_dirfs() -> type:
    """A `DirFileSystem` that refuses every write (built on first use: s3.py is heavy).

    The writing methods are those `egi_hub.singleuser.s3.WRITE_METHODS` lists, whose unit
    test checks the list against fsspec's public methods.
    """
    from fsspec.implementations.dirfs import DirFileSystem

    from egi_hub.singleuser.s3 import WRITE_METHODS

    def guard(method_name: str) -> Any:
        def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise PermissionError(f"this mount is read-only: {method_name.lstrip('_')} refused")

        return refuse

    namespace: dict[str, Any] = {m: guard(m) for m in WRITE_METHODS}

    def open_(self: Any, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if set(mode) & set("wax+"):
            raise PermissionError(f"this mount is read-only: open for {mode!r} refused")
        return DirFileSystem.open(self, path, mode, **kwargs)

    namespace.update(open=open_, __doc__="A local directory mount that refuses writes.")
    return type("ReadOnlyDirFileSystem", (DirFileSystem,), namespace)


# -- the Jupyter server extension -------------------------------------------------------


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _link_jupyter_server_extension(serverapp: Any) -> None:
    """Show the mounts in the file browser: our contents manager, unless the site set one.

    Linking runs before the server builds its contents manager, so the class set here is
    the one used. Outside a JupyterHub server (and without ``$EGI_MOUNTS_FILE``) nothing
    changes.
    """
    if not (os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("EGI_MOUNTS_FILE")):
        return
    export_paths()  # before the contents manager is built (loading comes after that)
    if "contents_manager_class" in serverapp.config.get("ServerApp", {}):
        serverapp.log.info("egi-hub: the site set a contents manager; mounts not in the browser")
        return
    from egi_hub.singleuser.contents import MountsContentsManager

    serverapp.contents_manager_class = MountsContentsManager


def _load_jupyter_server_extension(serverapp: Any) -> None:
    api_url = os.environ.get("JUPYTERHUB_API_URL")
    api_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    path, storage = export_paths()  # kernels started from here find them
    if not api_url or not api_token:
        return  # not a JupyterHub server: nobody to ask
    keeper = MountsKeeper(api_url, api_token, path, storage)
    serverapp._egi_mounts_task = asyncio.ensure_future(keeper.run())
    # At the server's exit (JupyterHub stops it with a signal, which jupyter-server
    # turns into a normal exit): no credential left behind in the home folder.
    atexit.register(remove_credentials, storage)
    serverapp.log.info("egi-hub: keeping the storage mounts in %s", path)
