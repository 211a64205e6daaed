"""The docker build backend with the real repo2docker on a machine without a container
engine (the docker CLI is installed, no daemon runs): the backend says so before any
work; repo2docker itself, run anyway, fails with its own reason, streamed as it comes,
and never reads a repository's repo2docker_config.py."""

from __future__ import annotations

import pytest

from egi_hub.binder_service.builders.base import BuildFailed
from egi_hub.binder_service.builders.docker import DockerBuilder
from egi_hub.binder_service.providers.base import Resolved
from egi_hub.binder_service.specs import RepoSpec

SOURCE = Resolved(
    RepoSpec("git", "https://git.example.org/r.git", "main"),
    "git",
    "https://git.example.org/r.git",
    "0" * 40,
    "r@0000000",
)
KEY = "d" * 40


@pytest.fixture(autouse=True)
def no_engine():
    if DockerBuilder().unavailable() is None:
        pytest.skip("a container engine answers here: these tests are for a machine without one")


async def test_build_without_an_engine_is_refused_with_the_reason(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy\n")
    with pytest.raises(BuildFailed) as info:
        await DockerBuilder().build(KEY, tmp_path, SOURCE, lambda line: None)
    assert str(info.value).startswith(
        "the docker builder cannot run here: no container engine answers at "
    )


async def test_repo2docker_runs_on_the_fetched_content_and_fails_cleanly(tmp_path, monkeypatch):
    content = tmp_path / "content"
    content.mkdir()
    (content / "requirements.txt").write_text("numpy\n")
    marker = tmp_path / "config-was-read"
    (content / "repo2docker_config.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    b = DockerBuilder()
    monkeypatch.setattr(b, "unavailable", lambda: None)  # run repo2docker all the same
    lines: list[str] = []
    with pytest.raises(BuildFailed) as info:
        await b.build(KEY, content, SOURCE, lines.append)
    assert str(info.value).startswith("repo2docker failed: ")
    assert "docker" in str(info.value) and "\n" not in str(info.value)
    assert f"Using local repo {content}." in lines
    assert not marker.exists(), "a repository's repo2docker_config.py must never be read"
