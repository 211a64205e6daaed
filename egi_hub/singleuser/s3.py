"""An S3 mount inside a notebook server: one bucket, the user's own keys, through s3fs.

The hub gives each user's server the credentials of the S3 mounts that user may see; the
notebook side reaches the bucket with `s3fs` (fsspec's S3 filesystem), wrapped so that:

- paths are keys relative to the mount's bucket (``fs.open("results/run1.csv")``), and a
  path with a ``.`` or ``..`` segment, an empty segment (``a//b``, ``s3://…``) or a
  control character is refused: an HTTP stack may resolve ``..`` in the URL and reach
  another bucket;
- a read-only mount refuses every write before anything is sent;
- a refused key/secret is a `S3CredentialsRefusedError` (a `PermissionError`) that names
  the mount and says "the S3 server refused the key/secret", never the secret itself;
- renewed credentials are picked up without a restart: a mount opened from its file
  re-reads the file when the credential keeper replaces it;
- the secret and session token never appear in reprs or exceptions, and are redacted
  from every log record made once a mount has been opened -- messages, tracebacks and
  stacks, of any logger, including those created later (botocore logs request headers,
  which carry the session token, at DEBUG, from child loggers it makes on first use).

The credential document: one JSON file per mount, written by the credential keeper as
``$EGI_STORAGE_DIR/<mount name>.json`` (see `storage_dir`; mode 0600)::

    {
      "version": 1,
      "kind": "s3",
      "name": "scratch",                         # the mount's name: [A-Za-z0-9._-], no ".."
      "endpoint_url": "https://s3.example.org",  # http(s)://host[:port], nothing more
      "bucket": "vo-access-egi-eu-scratch",      # an S3 bucket name (3-63, a-z 0-9 . -)
      "read_only": false,
      "region": "us-east-1",                     # optional (default us-east-1)
      "key": "AKIA...",                          # the access key id
      "secret": "...",                           # the secret access key
      "session_token": null,                     # optional: STS temporary credentials
      "expires_at": null                         # optional: epoch seconds, for STS
    }

Any other field, a missing one or a wrong type is refused with the field's name (never
its value). In a notebook::

    from egi_hub.singleuser.s3 import open_mount
    fs = open_mount("scratch")
    fs.pipe_file("notes.txt", b"hello")
    fs.ls("")
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fsspec.asyn import sync_wrapper
from fsspec.implementations.dirfs import DirFileSystem
from s3fs import S3FileSystem

__all__ = [
    "DEFAULT_STORAGE_DIR",
    "DOCUMENT_VERSION",
    "S3AccessDeniedError",
    "S3CredentialsError",
    "S3CredentialsRefusedError",
    "S3Mount",
    "S3MountCredentials",
    "S3ReadOnlyError",
    "check_key",
    "credentials_path",
    "load_credentials",
    "open_mount",
    "storage_dir",
]

DOCUMENT_VERSION = 1
DEFAULT_STORAGE_DIR = "~/.egi/storage"
DEFAULT_REGION = "us-east-1"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REQUIRED = {
    "version": int,
    "kind": str,
    "name": str,
    "endpoint_url": str,
    "bucket": str,
    "read_only": bool,
    "key": str,
    "secret": str,
}
_OPTIONAL = {"region": str, "session_token": str, "expires_at": (int, float)}
# S3 error codes that mean "these credentials are not accepted" (rather than "accepted,
# but not allowed to do this").
_REFUSED_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "InvalidClientTokenId",
}


class S3CredentialsError(ValueError):
    """A credential document that is not a valid S3 mount (names the field, not its value)."""


class S3CredentialsRefusedError(PermissionError):
    """The S3 server refused the mount's key/secret (wrong, revoked or expired)."""


class S3AccessDeniedError(PermissionError):
    """The S3 server accepted the key/secret but does not allow this operation."""


class S3ReadOnlyError(PermissionError):
    """A write to a mount configured read-only (refused before contacting the server)."""


def storage_dir() -> Path:
    """Where this server's credential documents are kept, as an absolute path.

    ``$EGI_STORAGE_DIR`` (the hub sets it per server); else ``storage`` beside
    ``$EGI_MOUNTS_FILE``, so a server told only where its mounts document is still keeps
    its credentials apart from other servers'; else ``~/.egi/storage`` (beside the default
    ``~/.egi/mounts.json``). ``~`` is expanded: kernels get the expanded value.
    """
    explicit = os.environ.get("EGI_STORAGE_DIR")
    if explicit:
        return Path(os.path.abspath(os.path.expanduser(explicit)))
    mounts = os.environ.get("EGI_MOUNTS_FILE")
    if mounts:
        return Path(os.path.abspath(os.path.expanduser(mounts))).parent / "storage"
    return Path(os.path.abspath(os.path.expanduser(DEFAULT_STORAGE_DIR)))


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise S3CredentialsError(
            f"S3 mount name {name!r} is not allowed: use 1-63 letters, digits, '.', '_', "
            "'-', starting with a letter or digit, without '..'"
        )
    return name


def credentials_path(name: str, directory: Path | None = None) -> Path:
    """The credential document of mount ``name`` (the name is checked: no path tricks)."""
    return (directory or storage_dir()) / f"{_check_name(name)}.json"


@dataclass(frozen=True)
class S3MountCredentials:
    """One S3 mount as the credential keeper delivers it; the secrets stay out of repr."""

    name: str
    endpoint_url: str
    bucket: str
    key: str
    secret: str = field(repr=False)
    read_only: bool = False
    region: str = DEFAULT_REGION
    session_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        url = urlsplit(self.endpoint_url)
        try:
            url.port  # noqa: B018 -- raises ValueError for a port out of range
        except ValueError:
            url = url._replace(scheme="")
        if (
            url.scheme not in ("http", "https")
            or not url.hostname
            or url.username is not None
            or url.password is not None
            or url.path not in ("", "/")
            or url.query
            or url.fragment
        ):
            raise S3CredentialsError(
                f"S3 mount {self.name!r}: endpoint_url must be http(s)://host[:port] "
                "without user, path, query or fragment"
            )
        if not _BUCKET.fullmatch(self.bucket) or ".." in self.bucket:
            raise S3CredentialsError(
                f"S3 mount {self.name!r}: bucket {self.bucket!r} is not an S3 bucket name "
                "(3-63 characters: a-z, 0-9, '.', '-', starting and ending with a letter "
                "or digit)"
            )
        for label, value in (
            ("key", self.key),
            ("secret", self.secret),
            ("session_token", self.session_token),
            ("region", self.region),
        ):
            if value is None and label == "session_token":
                continue
            if not value or _CONTROL.search(value) or value != value.strip():
                raise S3CredentialsError(
                    f"S3 mount {self.name!r}: {label} is empty or has spaces or control characters"
                )
        if self.expires_at is not None and not math.isfinite(self.expires_at):
            raise S3CredentialsError(f"S3 mount {self.name!r}: expires_at is not a number")

    def secrets(self) -> list[str]:
        """The values that must never be shown: the secret and the session token."""
        return [s for s in (self.secret, self.session_token) if s]

    @classmethod
    def from_document(cls, doc: Any) -> S3MountCredentials:
        """Check a parsed credential document (see the module docstring) and build one."""
        if not isinstance(doc, Mapping):
            raise S3CredentialsError("an S3 credential document must be a JSON object")
        label = repr(doc["name"]) if isinstance(doc.get("name"), str) else "(unnamed)"
        unknown = sorted(set(doc) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            names = ", ".join(repr(str(k)[:40]) for k in unknown[:5])
            raise S3CredentialsError(f"S3 mount {label}: unknown field(s) {names}")
        for key in _REQUIRED:
            if key not in doc:
                raise S3CredentialsError(f"S3 mount {label}: field {key!r} is missing")
        for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
            value = doc.get(key)
            if key in _OPTIONAL and value is None:
                continue
            # bool is an int: "version": true or "expires_at": false are not numbers.
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise S3CredentialsError(f"S3 mount {label}: field {key!r} has the wrong type")
        if doc["version"] != DOCUMENT_VERSION:
            raise S3CredentialsError(
                f"S3 mount {label}: document version {doc['version']} is not supported "
                f"(this egi-hub reads version {DOCUMENT_VERSION})"
            )
        if doc["kind"] != "s3":
            raise S3CredentialsError(f"S3 mount {label}: kind is not 's3'")
        return cls(
            name=doc["name"],
            endpoint_url=doc["endpoint_url"],
            bucket=doc["bucket"],
            key=doc["key"],
            secret=doc["secret"],
            read_only=doc["read_only"],
            region=doc.get("region") or DEFAULT_REGION,
            session_token=doc.get("session_token"),
            expires_at=doc.get("expires_at"),
        )

    def to_document(self) -> dict[str, Any]:
        """The credential document (what the credential keeper writes)."""
        return {
            "version": DOCUMENT_VERSION,
            "kind": "s3",
            "name": self.name,
            "endpoint_url": self.endpoint_url,
            "bucket": self.bucket,
            "read_only": self.read_only,
            "region": self.region,
            "key": self.key,
            "secret": self.secret,
            "session_token": self.session_token,
            "expires_at": self.expires_at,
        }


def load_credentials(path: str | os.PathLike) -> S3MountCredentials:
    """Read and check the credential document at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise S3CredentialsError(
            f"no S3 credentials at {path}: the mount is not given to this user, or they "
            "have not arrived yet"
        ) from None
    try:
        doc = json.loads(text)
    except ValueError:
        # The JSON error would quote the document, secret included.
        raise S3CredentialsError(f"the S3 credential document {path} is not JSON") from None
    return S3MountCredentials.from_document(doc)


def check_key(path: str) -> str:
    """``path`` as an object key under the mount root; `ValueError` for an unsafe one.

    Leading and trailing slashes are dropped (``/a/b/`` is ``a/b``); ``.`` and ``..``
    segments, empty segments and control characters are refused.
    """
    if not isinstance(path, str):
        raise TypeError(f"an S3 mount path must be text, not {type(path).__name__}")
    key = path.strip("/")
    if not key:
        return ""
    if _CONTROL.search(key):
        raise ValueError(f"S3 object key {path!r} has a control character")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(
                f"S3 object key {path!r} is not allowed: it has an empty, '.' or '..' "
                "segment (keys are relative to the mount's bucket)"
            )
    return key


class _Redactor:
    """Replaces known secrets by ``***`` in every log record, whichever logger makes it.

    Installed as the `logging` record factory (wrapping the one in place), so it covers
    loggers created later (botocore makes child loggers per service on first use) and
    every library that might repeat a secret, not only a list of names. Besides the
    message, a record's traceback (``exc_info``, formatted here once) and ``stack_info``
    are checked: an exception whose text carries a secret is logged with the redacted
    traceback as ``exc_text`` and no ``exc_info``, which is how `logging.Formatter`
    shows it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Longest first, so a secret that contains another is replaced whole. Replaced as
        # a whole tuple (never mutated), so records made in other threads meanwhile see
        # either the old or the new set.
        self._secrets: tuple[str, ...] = ()
        # The factory found at the first install, and the one wrapped now (another library
        # may set its own later, wrapping ours: re-installing wraps theirs, and the guard
        # below keeps the two from calling each other forever).
        self._base: Callable[..., logging.LogRecord] = logging.LogRecord
        self._previous: Callable[..., logging.LogRecord] | None = None
        self._making = threading.local()

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def add(self, secrets: list[str]) -> None:
        """Redact ``secrets`` from now on (and install the record factory if needed)."""
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if s}
            self._secrets = tuple(sorted(merged, key=len, reverse=True))
            current = logging.getLogRecordFactory()
            if getattr(current, "__self__", None) is not self:
                # First use, or someone replaced the factory since: wrap theirs.
                if self._previous is None:
                    self._base = current
                self._previous = current
                logging.setLogRecordFactory(self.make_record)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _shows_secret(self, text: str) -> bool:
        return any(s in text for s in self._secrets)

    def make_record(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        if getattr(self._making, "active", False):  # called back by a factory we wrap
            return self._base(*args, **kwargs)
        self._making.active = True
        try:
            record = (self._previous or self._base)(*args, **kwargs)
        finally:
            self._making.active = False
        if self._secrets:
            self.scrub(record)
        return record

    def scrub(self, record: logging.LogRecord) -> logging.LogRecord:
        """Redact ``record`` in place (its message, traceback and stack)."""
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: logging reports it when it formats it
            text = None
        if text is not None and self._shows_secret(text):
            record.msg, record.args = self.redact(text), None
        if record.exc_info and record.exc_info[0] is not None:
            trace = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if self._shows_secret(trace):
                record.exc_text, record.exc_info = self.redact(trace), None
        elif record.exc_text and self._shows_secret(record.exc_text):
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info and self._shows_secret(record.stack_info):
            record.stack_info = self.redact(record.stack_info)
        return record


_REDACTOR = _Redactor()


def _client_error_code(err: BaseException) -> str | None:
    """The S3 error code in ``err``'s cause chain (s3fs raises from botocore's ClientError)."""
    seen = 0
    while err is not None and seen < 10:
        response = getattr(err, "response", None)
        if isinstance(response, Mapping):
            code = (response.get("Error") or {}).get("Code")
            return str(code) if code is not None else None
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


class _MountS3FileSystem(S3FileSystem):
    """s3fs with its errors told in the mount's terms.

    Every S3 request of s3fs (its files' reads and writes included) goes through
    ``_call_s3``: the one place where a refused key/secret can be recognised for all
    operations.
    """

    def __init__(self, *args: Any, mount_name: str, **kwargs: Any) -> None:
        self.mount_name = mount_name
        super().__init__(*args, **kwargs)

    async def _call_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
        try:
            return await super()._call_s3(method, *akwarglist, **kwargs)
        except PermissionError as e:
            if isinstance(e, S3CredentialsRefusedError | S3AccessDeniedError):
                raise
            code = _client_error_code(e)
            if code not in _REFUSED_CODES and code not in (None, "AccessDenied"):
                # A HEAD has no body: a bare 403 may be either; ask once with a listing.
                code = await self._probe(kwargs.get("Bucket"))
            what = kwargs.get("Key") or kwargs.get("Bucket") or "the bucket"
            raise self._translate(code, method, str(what)) from None

    # s3fs binds its sync ``call_s3`` (used when files are written) to its own
    # ``_call_s3``: bind ours.
    call_s3 = sync_wrapper(_call_s3)

    async def _probe(self, bucket: str | None) -> str | None:
        if not bucket:
            return None
        try:
            await super()._call_s3("list_objects_v2", Bucket=bucket, MaxKeys=1)
        except PermissionError as e:
            return _client_error_code(e)
        return "AccessDenied"

    def _translate(self, code: str | None, method: str, what: str) -> PermissionError:
        if code in _REFUSED_CODES:
            return S3CredentialsRefusedError(
                f"S3 mount {self.mount_name!r}: the S3 server refused the key/secret "
                f"({code}); they may be wrong, revoked or expired"
            )
        return S3AccessDeniedError(
            f"S3 mount {self.mount_name!r}: the S3 server denied {method} on {what!r} "
            f"({code or 'Forbidden'}): the key/secret do not allow it"
        )


# Everything that changes the bucket; `S3Mount` refuses these on a read-only mount.
# A unit test checks that every public method of DirFileSystem is either here or known
# to only read, so a new fsspec method cannot slip past read_only unnoticed.
WRITE_METHODS = frozenset(
    """
    _copy _cp_file _makedirs _mkdir _mv_file _pipe _pipe_file _put _put_file _rm _rm_file
    copy cp cp_file delete makedir makedirs mkdir mkdirs move mv pipe pipe_file put
    put_file rename rm rm_file rmdir touch upload write_bytes write_text
    """.split()
)


def _read_only_guard(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def guarded_async(self: S3Mount, *args: Any, **kwargs: Any) -> Any:
            self._check_writable(name)
            return await method(self, *args, **kwargs)

        return guarded_async

    @functools.wraps(method)
    def guarded(self: S3Mount, *args: Any, **kwargs: Any) -> Any:
        self._check_writable(name)
        return method(self, *args, **kwargs)

    return guarded


#: botocore (since 1.36) adds CRC checksums to uploads and validates the ones it finds in
#: answers ("when_supported"). S3-compatible services (Ceph RGW, older MinIO, rclone)
#: answer ranged reads and multipart objects with checksums that are not the whole
#: object's, and botocore then fails every such read with ``FlexibleChecksumError``: a
#: file over s3fs's multipart threshold (50 MiB) could be saved but never read back.
#: "when_required" keeps checksums for the operations that need them and is what AWS
#: documents for third-party S3 services; a site may override it in ``s3_options``.
CHECKSUMS_WHEN_REQUIRED = {
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


class S3Mount(DirFileSystem):
    """The bucket of one S3 mount as an fsspec filesystem rooted at the bucket.

    Build it from credentials (`S3Mount(creds)`) or from the credential document
    (`S3Mount.from_file(path)`, `open_mount(name)`), which is re-read when it changes.
    """

    protocol = "egi-s3-mount"
    cachable = False  # instances hold credentials: never shared through fsspec's cache

    def __init__(
        self,
        credentials: S3MountCredentials,
        *,
        source: Path | None = None,
        s3_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._creds = credentials
        self._source = source
        self._stamp = self._file_stamp()
        self._s3_options = dict(s3_options or {})
        super().__init__(path=credentials.bucket, fs=self._build(credentials))

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> S3Mount:
        """The mount described by the credential document at ``path``, kept current."""
        path = Path(path)
        return cls(load_credentials(path), source=path, **kwargs)

    # -- credentials -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._creds.name

    @property
    def read_only(self) -> bool:
        return self._creds.read_only

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._source is None:
            return None
        try:
            st = self._source.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _build(self, creds: S3MountCredentials) -> S3FileSystem:
        _REDACTOR.add(creds.secrets())
        options = dict(self._s3_options)
        options["config_kwargs"] = {**CHECKSUMS_WHEN_REQUIRED, **options.get("config_kwargs", {})}
        return _MountS3FileSystem(
            mount_name=creds.name,
            key=creds.key,
            secret=creds.secret,
            token=creds.session_token,
            endpoint_url=creds.endpoint_url,
            client_kwargs={"region_name": creds.region},
            skip_instance_cache=True,
            **options,
        )

    @property
    def fs(self) -> S3FileSystem:
        """The s3fs filesystem with current credentials (re-read if the file changed)."""
        stamp = self._file_stamp()
        if self._source is not None and stamp is not None and stamp != self._stamp:
            creds = load_credentials(self._source)
            if creds.bucket != self._creds.bucket or creds.name != self._creds.name:
                raise S3CredentialsError(
                    f"S3 mount {self._creds.name!r}: the renewed credentials are for another "
                    "bucket or mount; reopen the mount"
                )
            self._creds, self._stamp = creds, stamp
            self._fs = self._build(creds)
        expires = self._creds.expires_at
        if expires is not None and expires <= time.time():
            raise S3CredentialsRefusedError(
                f"S3 mount {self._creds.name!r}: its credentials expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires))} and have not "
                "been renewed"
            )
        return self._fs

    @fs.setter
    def fs(self, value: S3FileSystem) -> None:
        self._fs = value

    # -- paths and writes --------------------------------------------------------------

    def _join(self, path: Any) -> Any:
        if isinstance(path, str):
            return super()._join(check_key(path))
        return super()._join(path)  # lists and dicts come back here one path at a time

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget cached listings: under ``path``, or all of this mount's without one.

        DirFileSystem passes the bucket on, and s3fs then forgets the bucket's own
        listing but keeps its folders'; the s3fs instance is this mount's alone, so
        without a path all of its cache goes.
        """
        if path:
            super().invalidate_cache(path)
        else:
            self.fs.invalidate_cache()

    def _check_writable(self, operation: str) -> None:
        if self._creds.read_only:
            raise S3ReadOnlyError(
                f"S3 mount {self._creds.name!r} is read-only: {operation.lstrip('_')} refused"
            )

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if set(mode) & set("wax+"):
            self._check_writable(f"open for {mode!r}")
        return super().open(path, mode, **kwargs)

    async def open_async(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if set(mode) & set("wax+"):
            self._check_writable(f"open for {mode!r}")
        return await super().open_async(path, mode, **kwargs)

    # -- never leak --------------------------------------------------------------------

    def __repr__(self) -> str:
        c = self._creds
        return (
            f"S3Mount(name={c.name!r}, endpoint_url={c.endpoint_url!r}, bucket={c.bucket!r}, "
            f"read_only={c.read_only})"
        )

    def to_dict(self, *, include_password: bool = True) -> dict[str, Any]:
        raise TypeError(
            f"S3 mount {self._creds.name!r} carries its user's credentials: it is not "
            "serialised (open it again from its credential document)"
        )

    def __reduce__(self) -> Any:
        return self.to_dict()  # raises: a mount is never pickled


for _name in WRITE_METHODS:
    setattr(S3Mount, _name, _read_only_guard(_name, getattr(DirFileSystem, _name)))
del _name


def open_mount(name: str, directory: Path | None = None, **kwargs: Any) -> S3Mount:
    """The S3 mount ``name`` of this user, from ``$EGI_STORAGE_DIR/<name>.json``."""
    return S3Mount.from_file(credentials_path(name, directory), **kwargs)
