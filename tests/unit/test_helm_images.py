"""The chart's images (helm/images/*/Dockerfile), read as text: no container engine runs
here (docker is only a client on this machine), so the images are not built by the tests.

What is checked instead: base images pinned to a full version tag; the final stage runs
as a non-root uid; egi-hub's version is the package's (egi_hub/_version.py) and every
other version comes from the wheel's own metadata (pyproject.toml), never from a second
list; no secret is baked in; every COPY'd path exists, passes the Dockerfile's
.dockerignore and together they are what building the wheel needs; the entry points are
what the chart runs; the chart's default image names are the ones the docs build.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from egi_hub import __version__

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "helm" / "images"
CHART = ROOT / "helm" / "egi-hub"
DOCS = ROOT / "docs" / "admin" / "helm.md"
KINDS = ("hub", "singleuser")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSW|PRIVATE|CREDENTIAL|API_?KEY|CRYPT)", re.I)


@dataclass
class Instruction:
    name: str
    args: str
    line: int


def instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        name, _, args = text.partition(" ")
        found.append(Instruction(name.upper(), args.strip(), start))
    assert not pending, f"{path}: ends inside a continued line"
    return found


def final_stage(steps: list[Instruction]) -> list[Instruction]:
    last = max(i for i, step in enumerate(steps) if step.name == "FROM")
    return steps[last:]


def dockerfile(kind: str) -> Path:
    return IMAGES / kind / "Dockerfile"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_base_images_are_pinned_to_a_full_version(kind: str) -> None:
    stages: set[str] = set()
    for step in instructions(dockerfile(kind)):
        if step.name != "FROM":
            continue
        words = step.args.split()
        image = words[0]
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
        if image in stages:
            continue
        name, _, tag = image.partition(":")
        assert "@" in image or re.match(r"^\d+\.\d+\.\d+-", tag), f"{kind}: {image} not pinned"
        assert "$" not in image, f"{kind}: base image from a build argument: {image}"
        if name == "python":  # egi-hub's own floor (requires-python)
            floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
            have = tuple(int(x) for x in tag.split("-")[0].split(".")[:2])
            assert have >= tuple(int(x) for x in floor.split(".")), f"{kind}: {image}"


def test_the_final_stage_runs_as_a_non_root_uid(kind: str) -> None:
    stage = final_stage(instructions(dockerfile(kind)))
    users = [i for i, step in enumerate(stage) if step.name == "USER"]
    assert users, f"{kind}: no USER in the final stage"
    uid = stage[users[-1]].args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{kind}: USER {uid} (numeric, not root)"
    assert int(uid) == 1000, f"{kind}: the chart's securityContexts run uid 1000"
    runs = [i for i, step in enumerate(stage) if step.name == "RUN"]
    assert max(runs) < users[-1], f"{kind}: RUN after the last USER runs as root"


def test_egi_hub_is_the_package_version_and_installed_from_the_wheel(kind: str) -> None:
    stage = final_stage(instructions(dockerfile(kind)))
    args = {
        step.args.partition("=")[0]: step.args.partition("=")[2]
        for step in stage
        if step.name == "ARG"
    }
    assert args.get("EGI_HUB_VERSION") == __version__, f"{kind}: ARG EGI_HUB_VERSION"
    installs = [s for s in stage if s.name == "RUN" and "pip install" in s.args]
    assert len(installs) == 1, f"{kind}: one pip install, of the wheel"
    wheel = re.search(
        r'"?(/\S+/egi_hub-\$\{EGI_HUB_VERSION\}-py3-none-any\.whl)(\[[^]]*])?"?', installs[0].args
    )
    assert wheel, f"{kind}: the wheel egi_hub-${{EGI_HUB_VERSION}}-py3-none-any.whl"
    labels = " ".join(s.args for s in stage if s.name == "LABEL")
    assert 'org.opencontainers.image.version="${EGI_HUB_VERSION}"' in labels


def pip_installs(kind: str) -> list[list[str]]:
    """The arguments of each `pip install` in the Dockerfile (any stage)."""
    found = []
    for step in instructions(dockerfile(kind)):
        if step.name != "RUN":
            continue
        command: list[str] = []
        for word in [*shlex.split(step.args), "&&"]:
            if word not in ("&&", "||", ";"):
                command.append(word)
                continue
            if command[:2] == ["pip", "install"]:
                found.append([w for w in command[2:] if not w.startswith("-")])
            command = []
    return found


def test_every_version_comes_from_pyproject(kind: str) -> None:
    """Only the wheel is pip-installed: its metadata (pyproject.toml's dependencies and
    extras) is the one list of versions; no package is named apart, pinned twice."""
    extras = PYPROJECT["project"].get("optional-dependencies", {})
    for words in pip_installs(kind):
        for word in words:
            match = re.fullmatch(
                r"/tmp/wheels/egi_hub-\$\{EGI_HUB_VERSION\}-py3-none-any\.whl"
                r"(?:\[([a-z0-9_,-]+)])?",
                word,
            )
            assert match, f"{kind}: pip installs {word!r} by name, beside pyproject.toml"
            for extra in filter(None, (match[1] or "").split(",")):
                assert extra in extras, (
                    f"{kind}: the extra {extra!r} is not in pyproject.toml's "
                    "[project.optional-dependencies]"
                )


def test_the_singleuser_image_has_ipywidgets_from_an_extra() -> None:
    extras = PYPROJECT["project"].get("optional-dependencies", {})
    (words,) = pip_installs("singleuser")
    named = re.search(r"\[([a-z0-9_,-]+)]$", words[0])
    assert named, "singleuser: the wheel with its singleuser extra"
    wanted = [req for e in named[1].split(",") for req in extras.get(e, [])]
    assert any(re.match(r"ipywidgets\b", req) for req in wanted), wanted


def test_no_secret_is_baked_in(kind: str) -> None:
    text = dockerfile(kind).read_text()
    for step in instructions(dockerfile(kind)):
        if step.name in ("ARG", "ENV"):
            for word in shlex.split(step.args):
                name = word.partition("=")[0]
                assert not SECRET_NAME.search(name), f"{kind}: {step.name} {name}"
        if step.name in ("COPY", "ADD"):
            assert not re.search(r"\.(pem|key|env)\b|id_rsa|\.netrc", step.args), step.args
            assert step.name != "ADD", f"{kind}: ADD (use COPY: no URLs, no unpacking)"
    assert "PRIVATE KEY" not in text
    assert not re.search(r"\b[0-9a-fA-F]{32,}\b|\b[A-Za-z0-9+/]{40,}={0,2}", text)
    assert "--mount=type=secret" not in text  # none needed: everything is public


def dockerignore_admits(kind: str, path: str) -> bool:
    """BuildKit's <Dockerfile>.dockerignore, for the simple patterns it uses."""
    return ignore_file_admits(IMAGES / kind / "Dockerfile.dockerignore", path)


def ignore_patterns(ignore: Path) -> list[str]:
    """A .dockerignore's patterns, in order, comments and blank lines left out."""
    lines = (raw.strip() for raw in ignore.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignore_file_admits(ignore: Path, path: str) -> bool:
    """Whether the .dockerignore ``ignore`` sends ``path``, for the patterns used here."""
    admitted = True
    for line in ignore_patterns(ignore):
        negate = line.startswith("!")
        pattern = line.lstrip("!")
        top = path.split("/")[0]
        if pattern == "*" or pattern == top or (pattern.startswith("**/") and pattern[3:] in path):
            admitted = negate
    return admitted


def test_every_copied_path_exists_and_builds_the_wheel(kind: str) -> None:
    copied: set[str] = set()
    for step in instructions(dockerfile(kind)):
        if step.name != "COPY" or "--from=" in step.args:
            continue
        *sources, _ = shlex.split(step.args)
        for source in sources:
            assert (ROOT / source).exists(), f"{kind}: COPY {source}: no such path"
            assert dockerignore_admits(kind, source), f"{kind}: {source} is .dockerignore'd"
            copied.add(source)
    setuptools = PYPROJECT["tool"]["setuptools"]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    needed |= {d.split("/")[0] for d in setuptools["package-dir"].values()}
    assert needed <= copied, f"{kind}: the wheel needs {sorted(needed - copied)}"
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert setuptools["dynamic"]["version"] == {"attr": "egi_hub._version.__version__"}


def test_the_entry_points_are_what_the_chart_runs() -> None:
    deployment = (CHART / "templates" / "hub" / "deployment.yaml").read_text()
    hub = final_stage(instructions(dockerfile("hub")))
    cmd = next(s for s in reversed(hub) if s.name == "CMD")
    assert cmd.args == '["jupyterhub", "--config=/usr/local/etc/egi-hub/jupyterhub_config.py"]'
    assert "--config=/usr/local/etc/egi-hub/jupyterhub_config.py" in deployment
    workdir = next(s for s in reversed(hub) if s.name == "WORKDIR").args
    assert f"workingDir: {workdir}" in deployment
    singleuser = final_stage(instructions(dockerfile("singleuser")))
    cmd = next(s for s in reversed(singleuser) if s.name == "CMD")
    assert cmd.args == '["jupyterhub-singleuser"]'  # KubeSpawner's default cmd


def default_repositories() -> dict[str, str]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    image = values.get("singleuser", {}).get("image", {})
    return {"hub": values["hub"]["image"]["name"], "singleuser": image.get("name", "")}


def test_the_chart_pulls_the_images_the_docs_build(kind: str) -> None:
    repository = default_repositories()[kind]
    assert repository, f"values.yaml: no default image for {kind}"
    build = f'docker build -f helm/images/{kind}/Dockerfile -t "$REGISTRY/{repository}:$VERSION" .'
    assert build in DOCS.read_text(), f"docs/admin/helm.md: {build}"
    assert build in dockerfile(kind).read_text(), f"{kind}/Dockerfile's own comment: {build}"


def test_the_root_dockerignore_is_the_images_own(kind: str) -> None:
    """Builders that read only the context's .dockerignore (podman/buildah, Docker's
    classic builder) send what BuildKit sends with the Dockerfile's own: never the
    virtualenv, the caches, .git or the tests."""
    root = ROOT / ".dockerignore"
    assert ignore_patterns(root) == ignore_patterns(IMAGES / kind / "Dockerfile.dockerignore")
    for path in (".venv/bin/python", ".cache/helm", ".git/HEAD", ".egi-hub/secret", "tests/x.py"):
        assert not ignore_file_admits(root, path), f".dockerignore sends {path}"
    for path in ("docs/index.md", "helm/egi-hub/values.yaml", "egi_hub/__pycache__/a.pyc"):
        assert not ignore_file_admits(root, path), f".dockerignore sends {path}"
    for path in ("pyproject.toml", "README.md", "egi_hub/cli.py", "binder_service/service.py"):
        assert ignore_file_admits(root, path), f".dockerignore leaves out {path}"
