"""Build backends without processes: log line handling, the venv builder's plan checks
(hostile requirements, postBuild, container-only repositories) and folder clean-up,
repo2docker's command line and JSON logs, the docker engine probe, and the Kubernetes
build pod manifest (kubernetes-validate --strict, 1.29 and 1.33)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
from traitlets import TraitError

from egi_hub.binder_service.builders.base import (
    BuildFailed,
    BuildResult,
    LineSplitter,
    NeedsContainer,
    one_line,
)
from egi_hub.binder_service.builders.docker import DockerBuilder, Repo2dockerLog
from egi_hub.binder_service.builders.kubernetes import (
    KubernetesBuilder,
    default_image,
    pod_name,
    repo2docker_target,
)
from egi_hub.binder_service.builders.venv import MARKER, VenvBuilder
from egi_hub.binder_service.providers.base import Resolved
from egi_hub.binder_service.specs import RepoSpec

SHA = "0123456789abcdef0123456789abcdef01234567"
KEY = "a" * 40
GIT = Resolved(
    RepoSpec("gh", "owner/repo", "main"), "git", "https://github.com/owner/repo", SHA, "o/r"
)


def repo(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(data)
    root.mkdir(exist_ok=True)
    return root


def test_one_line_and_build_failed_are_clean():
    assert one_line("a\nb\x1b[31m red\x1b[0m\tc\x00") == "a b red c"
    assert len(one_line("x" * 1000)) == 300
    assert str(BuildFailed("pip failed:\nERROR: \x1b[1mboom")) == "pip failed: ERROR: boom"
    assert BuildResult(KEY, "venv", {"venv": "/x"}, "a==1").to_json()["environment"] == {
        "venv": "/x"
    }


def test_line_splitter_keeps_redraws_last_state_and_caps_lines():
    s = LineSplitter()
    assert s.feed(b"one\ntw") == ["one"]
    assert s.feed(b"o\r\n 10%\r 50%\r100%\n\x1b[32mok\x1b[0m\n") == ["two", "100%", "ok"]
    assert s.feed(b"\xff\xfe bad utf-8\n") == ["\ufffd\ufffd bad utf-8"]
    long = s.feed(b"y" * 100_000)
    assert long and all(len(line) < 4100 for line in long)
    assert s.flush() == [] or all(len(line) < 4100 for line in s.flush())


# The venv builder's checks (before any process).


def venv(tmp_path: Path, **traits) -> VenvBuilder:
    return VenvBuilder(envs_dir=str(tmp_path / "envs"), **traits)


def test_container_only_repository_gets_the_reason(tmp_path):
    root = repo(tmp_path, {"apt.txt": "curl\n", "requirements.txt": "numpy\n"})
    with pytest.raises(NeedsContainer) as info:
        venv(tmp_path).check(root)
    assert str(info.value) == (
        "this repository needs the container builder: it has apt.txt (system packages)"
    )


def test_post_build_is_refused_unless_the_site_allows_it(tmp_path):
    root = repo(tmp_path, {"postBuild": "#!/bin/sh\necho hi\n"})
    with pytest.raises(NeedsContainer, match="postBuild script"):
        venv(tmp_path).check(root)
    venv(tmp_path, allow_post_build=True).check(root)


@pytest.mark.parametrize(
    "line",
    [
        "-e ../outside",
        "-e /abs/pkg",
        "../sibling/pkg",
        "/etc/passwd",
        "-r ../../etc/passwd",
        "--requirement=/etc/passwd",
        "-c ../constraints.txt",
        "--find-links=/var/wheels",
        "-f ../wheels",
        "pkg @ file:///etc/pkg.whl",
        "file:../pkg",
        "-e git+file:///srv/repo#egg=x",
        "-e../outside",
        "-r../../etc/passwd",
        "-e \\\n    ../continued",
        "-i file:///etc/index",
    ],
)
def test_requirements_naming_paths_outside_the_content_are_refused(tmp_path, line):
    root = repo(tmp_path, {"requirements.txt": f"numpy\n{line}\n"})
    with pytest.raises(BuildFailed, match=r"requirements.txt line 2 names .* outside the repo"):
        venv(tmp_path).check(root)


def test_local_paths_inside_the_content_are_fine(tmp_path):
    files = {
        "requirements.txt": "-e .\n./pkg\n-r more.txt\n-c constraints.txt\n-f ./wheels\n",
        "more.txt": "numpy\n",
        "constraints.txt": "numpy<3\n",
        "setup.py": "",
        "pkg/setup.py": "",
        "wheels/x.whl": "not a requirements file: never read",
    }
    venv(tmp_path).check(repo(tmp_path, files))


def test_nested_requirement_files_are_checked_too(tmp_path):
    files = {"binder/requirements.txt": "-r ../base.txt\n", "base.txt": "-e ../../escape\n"}
    with pytest.raises(BuildFailed, match=r"base.txt line 1 names '../../escape'"):
        venv(tmp_path).check(repo(tmp_path, files))
    loop = {"requirements.txt": "-r requirements.txt\n"}
    with pytest.raises(BuildFailed, match="nested more than 5 deep"):
        venv(tmp_path).check(repo(tmp_path / "loop", loop))


def test_whole_source_build_with_an_escaping_symlink_is_refused(tmp_path):
    root = repo(tmp_path, {"setup.py": "from setuptools import setup; setup()"})
    (root / "leak.txt").symlink_to("/etc/passwd")
    with pytest.raises(BuildFailed, match=r"leak.txt is a symlink that points outside"):
        venv(tmp_path).check(root)


def test_broken_environment_file_fails_the_check(tmp_path):
    with pytest.raises(BuildFailed, match=r"runtime.txt is not valid"):
        venv(tmp_path).check(repo(tmp_path, {"runtime.txt": "nonsense"}))


def test_venv_builder_availability_and_keys(tmp_path):
    assert "envs_dir" in VenvBuilder().unavailable()
    assert venv(tmp_path).unavailable() is None
    assert venv(tmp_path, python="/no/such/python").unavailable().startswith("the Python")
    for bad in ("../x", "a/b", "", "ä" * 3):
        with pytest.raises(BuildFailed):
            venv(tmp_path)._paths(bad)
    share, isolated = venv(tmp_path).key_extra(), venv(tmp_path, base="isolated").key_extra()
    assert share != isolated != venv(tmp_path, pip_args=["--index-url", "x"]).key_extra()


def test_clean_removes_half_built_folders_and_dangling_links(tmp_path):
    b = venv(tmp_path)
    envs, builds = tmp_path / "envs", tmp_path / "envs" / ".builds"
    done, half, tmp = (
        builds / f"{KEY}-00000001",
        builds / f"{'b' * 40}-00000002",
        builds / ".tmp-x-1",
    )
    for folder in (done, half, tmp):
        folder.mkdir(parents=True)
    (done / MARKER).write_text("{}")
    (envs / KEY).symlink_to(f".builds/{done.name}")
    (envs / ("c" * 40)).symlink_to(".builds/gone-00000003")
    removed = b.clean()
    assert sorted(removed) == sorted(["c" * 40, half.name, tmp.name])
    assert (envs / KEY / MARKER).is_file()
    half.mkdir()
    assert b.clean(building={"b" * 40}) == [] and half.is_dir()


# repo2docker: command lines and JSON logs.


def test_docker_command_line(tmp_path):
    b = DockerBuilder(image_prefix="registry.example.org/binder/env:", push=True)
    cmd = b.command(KEY, tmp_path, GIT)
    assert cmd[1:] == [
        "--no-run",
        "--json-logs",
        "--image-name",
        f"registry.example.org/binder/env:{KEY}",
        "--user-id",
        "1000",
        "--user-name",
        "jovyan",
        "--label",
        f"eu.egi-hub.binder.key={KEY}",
        "--label",
        f"eu.egi-hub.binder.source=https://github.com/owner/repo@{SHA}",
        "--push",
        "--",
        str(tmp_path),
    ]
    assert cmd[0].endswith("repo2docker")
    assert "--push" not in DockerBuilder().command(KEY, tmp_path)
    assert DockerBuilder().image(KEY) == f"egi-binder-env:{KEY}"


@pytest.mark.parametrize("prefix", ["UPPER:", "a b:", "x:y:", "-x:", "a:b/", "a" * 300])
def test_bad_image_prefixes_are_refused(prefix):
    with pytest.raises(TraitError):
        DockerBuilder(image_prefix=prefix)


@pytest.mark.parametrize("prefix", ["egi-binder-env:", "localhost:5000/env-", "r.io/a/b_c:"])
def test_good_image_prefixes(prefix):
    assert DockerBuilder(image_prefix=prefix).image(KEY) == prefix + KEY


def test_repo2docker_json_logs_are_parsed():
    log = Repo2dockerLog()
    lines = [
        json.dumps({"message": "Picked Git content provider.\n"}),
        json.dumps({"message": "Using PythonBuildPack builder\n", "phase": "building"}),
        json.dumps({"message": "Step 1/2\nStep 2/2\n", "phase": "building"}),
        json.dumps({"message": "#7 10%\r#7 100%\n", "phase": "building"}),
        "not json: the docker CLI wrote this",
        json.dumps(["a list"]),
        json.dumps(
            {
                "message": "#12 pushing manifest for r.io/env:k@sha256:" + "ab" * 32 + " done",
                "phase": "building",
            }
        ),
    ]
    out = [text for line in lines for text in log.feed(line)]
    assert out[:5] == [
        "Picked Git content provider.",
        "Using PythonBuildPack builder",
        "Step 1/2",
        "Step 2/2",
        "#7 100%",
    ]
    assert "not json: the docker CLI wrote this" in out
    assert log.buildpack == "PythonBuildPack" and log.digest == "sha256:" + "ab" * 32
    assert log.failures == []
    log.feed(json.dumps({"message": "Error during build: no space left", "phase": "failed"}))
    log.feed(json.dumps({"message": "Traceback (most recent call last):", "phase": "failed"}))
    assert log.reason() == "no space left"
    assert Repo2dockerLog().reason() == "no output"


def test_docker_engine_probe_says_why_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    b = DockerBuilder()
    reason = b.unavailable()
    assert reason.startswith(f"no container engine answers at unix://{tmp_path}/docker.sock")
    assert b.unavailable() is reason  # remembered
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "no docker command" in DockerBuilder().unavailable()


# Kubernetes: names, targets and the build pod.


@pytest.mark.parametrize("key", [KEY, "f" * 64, "ABC_def.ghi", "x" * 200, "--a--"])
def test_pod_names_are_dns_labels(key):
    name = pod_name(key)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


def test_repo2docker_targets():
    assert repo2docker_target(GIT) == ["--ref", SHA, "--", "https://github.com/owner/repo"]
    zenodo = Resolved(
        RepoSpec("zenodo", "10.5281/zenodo.1234"),
        "zenodo",
        "https://zenodo.org/api/records/1235",
        "1235",
        "zenodo.1235",
    )
    assert repo2docker_target(zenodo) == ["--", "https://zenodo.org/records/1235"]
    figshare = Resolved(
        RepoSpec("doi", "10.6084/m9.figshare.9782777"),
        "figshare",
        "https://api.figshare.com/v2/articles/9782777/versions/3",
        "9782777.v3",
        "figshare",
    )
    assert repo2docker_target(figshare) == ["--", "10.6084/m9.figshare.9782777"]
    odd = Resolved(RepoSpec("git", "https://x/y", "main"), "svn", "https://x/y", "1", "x")
    with pytest.raises(BuildFailed, match="cannot fetch svn content"):
        repo2docker_target(odd)


def test_default_repo2docker_image_matches_the_installed_release():
    assert re.fullmatch(r"quay\.io/jupyterhub/repo2docker:20\d\d\.\d\d\.\d+", default_image())


def kube(**traits) -> KubernetesBuilder:
    return KubernetesBuilder(namespace="binder", image_prefix="registry.example.org/env:", **traits)


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
@pytest.mark.parametrize(
    "traits",
    [
        {},
        {
            "push_secret": "registry-push",
            "service_account": "binder-build",
            "node_selector": {"egi.eu/pool": "build"},
            "tolerations": [{"key": "build", "operator": "Exists", "effect": "NoSchedule"}],
            "image_pull_secrets": ["quay"],
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        },
    ],
)
def test_build_pod_manifest_is_valid_kubernetes(version, traits):
    pod = kube(**traits).pod_manifest(KEY, GIT)
    kubernetes_validate.validate(json.loads(json.dumps(pod)), version, strict=True)


def test_build_pod_manifest_content():
    pod = kube(push_secret="registry-push").pod_manifest(KEY, GIT)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == f"binder-build-{KEY}"
    assert meta["labels"]["app.kubernetes.io/component"] == "binder-build"
    assert meta["labels"]["egi-hub.eu/build-key"] == KEY
    (container,) = spec["containers"]
    assert container["args"] == [
        "jupyter-repo2docker",
        "--no-run",
        "--push",
        "--json-logs",
        "--image-name",
        f"registry.example.org/env:{KEY}",
        "--user-id",
        "1000",
        "--user-name",
        "jovyan",
        "--label",
        f"eu.egi-hub.binder.key={KEY}",
        "--ref",
        SHA,
        "--",
        "https://github.com/owner/repo",
    ]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] == 900
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["docker-socket"]["hostPath"] == {
        "path": "/var/run/dind/docker.sock",
        "type": "Socket",
    }
    assert volumes["docker-config"]["secret"]["secretName"] == "registry-push"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["docker-config"] == {
        "name": "docker-config",
        "mountPath": "/root/.docker",
        "readOnly": True,
    }


def test_kubernetes_builder_availability(monkeypatch, tmp_path):
    assert "image_prefix" in KubernetesBuilder().unavailable()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert "no Kubernetes API" in kube().unavailable()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert kube().unavailable() is None
    assert kube().key_extra() != kube(image="quay.io/jupyterhub/repo2docker:x").key_extra()


def test_a_bare_relative_path_out_of_the_repository_is_refused(tmp_path):
    """``pkgs/../../outside`` has no leading ``.``, and pip still reads it from disk."""
    from egi_hub.binder_service.builders.base import BuildFailed
    from egi_hub.binder_service.builders.venv import check_requirements

    (tmp_path / "requirements.txt").write_text("numpy==2.1\npkgs/../../outside\n")
    with pytest.raises(BuildFailed, match="outside the repository"):
        check_requirements(tmp_path, "requirements.txt", tmp_path)
