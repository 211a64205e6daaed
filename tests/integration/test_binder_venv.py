"""The venv build backend with real processes: real virtualenvs, real pip against a
local wheel folder (``--no-index``: never PyPI), postBuild scripts; failures, timeouts
and cancellation leave nothing behind, not even a child process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from egi_hub.binder_service.builders.base import BuildFailed, NeedsContainer
from egi_hub.binder_service.builders.venv import MARKER, VenvBuilder
from egi_hub.binder_service.envkey import environment_key
from egi_hub.binder_service.providers.base import Resolved
from egi_hub.binder_service.specs import RepoSpec

SOURCE = Resolved(
    RepoSpec("git", "https://git.example.org/r.git", "main"),
    "git",
    "https://git.example.org/r.git",
    "0" * 40,
    "r@0000000",
)


def write_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A one-module wheel (what `pip wheel` makes of a tiny project), written directly."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{name}.py", f"VALUE = 42\nVERSION = {version!r}\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    write_wheel(folder)
    return folder


def content(tmp_path: Path, files: dict[str, str], name: str = "repo") -> Path:
    root = tmp_path / name
    root.mkdir()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(data)
    return root


def builder(tmp_path: Path, wheels: Path, **traits) -> VenvBuilder:
    traits.setdefault("pip_args", ["--no-index", "--find-links", str(wheels)])
    return VenvBuilder(envs_dir=str(tmp_path / "envs"), **traits)


def run_python(python: str, code: str) -> str:
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    return subprocess.run(
        [python, "-c", code], env=clean, capture_output=True, text=True, check=True
    ).stdout.strip()


def leftovers(tmp_path: Path) -> list[str]:
    """What a failed build may have left in envs_dir (the pip cache is shared)."""
    envs = tmp_path / "envs"
    found = [p.name for p in envs.iterdir() if p.name not in (".builds", ".pip-cache")]
    builds = envs / ".builds"
    return found + [p.name for p in builds.iterdir()] if builds.exists() else found


def is_link(path: Path) -> bool:
    return path.is_symlink()


def files_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def exists(path: Path | str) -> bool:
    return os.path.exists(path)


def real(path: Path | str) -> str:
    return os.path.realpath(path)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def wait_for(condition, seconds: float = 30.0) -> None:
    """Wait until ``condition()`` holds (polled: it reads /proc and the log list)."""
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def test_requirements_build_shares_jupyterlab_and_keeps_its_key(tmp_path, wheels):
    root = content(tmp_path, {"requirements.txt": "tinypkg\n", "analysis.ipynb": "{}"})
    b = builder(tmp_path, wheels)
    key = environment_key(root, extra=b.key_extra())
    lines: list[str] = []
    result = await b.build(key, root, SOURCE, lines.append)
    assert any("Successfully installed tinypkg-1.0" in line for line in lines)
    assert (result.key, result.backend) == (key, "venv")
    python = result.environment["python"]
    assert python == str(tmp_path / "envs" / key / "bin" / "python")
    out = run_python(python, "import tinypkg, jupyterlab, ipykernel; print(tinypkg.VALUE)")
    assert out == "42"
    assert "tinypkg==1.0" in result.resolved.splitlines()
    env = Path(result.environment["venv"])
    assert is_link(env) and real(env).split("/")[-2] == ".builds"
    assert (env / "pip-freeze.txt").read_text().strip() == result.resolved.strip()
    assert (env / MARKER).is_file() and await b.present(result)
    kernel = env / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    assert python in kernel.read_text()
    # A commit that changes only a notebook keeps the key; the requirements do not.
    (root / "analysis.ipynb").write_text('{"cells": ["new"]}')
    assert environment_key(root, extra=b.key_extra()) == key
    (root / "requirements.txt").write_text("tinypkg==1.0\n")
    assert environment_key(root, extra=b.key_extra()) != key
    await b.remove(key)
    assert not is_link(env) and not await b.present(result)
    assert leftovers(tmp_path) == []


# A PEP 517 backend inside the repository (backend-path): pip builds the package with no
# index at all, so the test needs no setuptools or wheel download.
BACKEND = """
import os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "selfpkg-0.1-py3-none-any.whl"
    info = "selfpkg-0.1.dist-info"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        z.write("selfpkg.py", "selfpkg.py")
        z.writestr(info + "/METADATA", "Metadata-Version: 2.1\\nName: selfpkg\\nVersion: 0.1\\n"
                   "Requires-Dist: tinypkg\\n")
        z.writestr(info + "/WHEEL", "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\n"
                   "Tag: py3-none-any\\n")
        z.writestr(info + "/RECORD", "")
    return name
"""


async def test_a_package_that_installs_itself(tmp_path, wheels):
    pyproject = (
        "[build-system]\nrequires = []\nbuild-backend = 'backend'\nbackend-path = ['_build']\n"
        "[project]\nname = 'selfpkg'\nversion = '0.1'\n"
    )
    files = {
        "pyproject.toml": pyproject,
        "_build/backend.py": BACKEND,
        "selfpkg.py": "from tinypkg import VALUE\n",
    }
    root = content(tmp_path, {**files, "nb.ipynb": "{}"})
    b = builder(tmp_path, wheels)
    key = environment_key(root)
    result = await b.build(key, root, SOURCE, lambda line: None)
    assert run_python(result.environment["python"], "import selfpkg; print(selfpkg.VALUE)") == "42"
    assert f"selfpkg @ git+{SOURCE.source}@{SOURCE.ref}" in result.resolved.splitlines()
    assert files_in(root) == sorted([*files, "nb.ipynb"]), "no build artefacts in the content"
    (root / "nb.ipynb").write_text("changed")
    assert environment_key(root) == key
    (root / "selfpkg.py").write_text("VALUE = 1\n")
    assert environment_key(root) != key


async def test_a_failing_package_build_gives_the_build_error(tmp_path, wheels):
    broken = BACKEND.replace("import os, zipfile", "import os, zipfile, no_such_module_egi")
    pyproject = (
        "[build-system]\nrequires = []\nbuild-backend = 'backend'\nbackend-path = ['_build']\n"
        "[project]\nname = 'selfpkg'\nversion = '0.1'\n"
    )
    root = content(tmp_path, {"pyproject.toml": pyproject, "_build/backend.py": broken})
    with pytest.raises(BuildFailed) as info:
        await builder(tmp_path, wheels).build(environment_key(root), root, SOURCE, print)
    assert str(info.value) == (
        "installing the repository (pip install .) failed: "
        "ModuleNotFoundError: No module named 'no_such_module_egi'"
    )
    assert leftovers(tmp_path) == []


async def test_environment_yml_pip_part(tmp_path, wheels):
    yml = "name: x\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - tinypkg\n"
    root = content(tmp_path, {"binder/environment.yml": yml})
    b = builder(tmp_path, wheels)
    result = await b.build(environment_key(root), root, SOURCE, lambda line: None)
    assert run_python(result.environment["python"], "import tinypkg; print(tinypkg.VALUE)") == "42"


async def test_unknown_requirement_fails_with_pips_reason_and_leaves_nothing(tmp_path, wheels):
    root = content(tmp_path, {"requirements.txt": "tinypkg\nno-such-package-egi==1.0\n"})
    b = builder(tmp_path, wheels)
    with pytest.raises(BuildFailed) as info:
        await b.build(environment_key(root), root, SOURCE, lambda line: None)
    assert str(info.value) == (
        "installing requirements.txt failed: "
        "No matching distribution found for no-such-package-egi==1.0"
    )
    assert leftovers(tmp_path) == []


async def test_post_build_refused_by_default_before_any_work(tmp_path, wheels):
    root = content(tmp_path, {"postBuild": "#!/bin/sh\necho hi\n"})
    with pytest.raises(NeedsContainer, match="postBuild"):
        await builder(tmp_path, wheels).build("k" * 40, root, SOURCE, lambda line: None)
    assert not (tmp_path / "envs").exists()


async def test_post_build_runs_without_the_services_secrets(tmp_path, wheels, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-secret")
    monkeypatch.setenv("PIP_INDEX_URL", "https://evil.example.org/simple")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret")
    script = "#!/bin/sh\nenv | sort\npython -c 'import tinypkg; print(\"post\", tinypkg.VALUE)'\n"
    root = content(tmp_path, {"requirements.txt": "tinypkg\n", "postBuild": script})
    lines: list[str] = []
    b = builder(tmp_path, wheels, allow_post_build=True)
    await b.build(environment_key(root), root, SOURCE, lines.append)
    assert "post 42" in lines
    env = dict(line.split("=", 1) for line in lines if "=" in line and line.split("=")[0].isupper())
    assert not {"JUPYTERHUB_API_TOKEN", "PIP_INDEX_URL", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert env["HOME"].startswith(str(tmp_path / "envs" / ".builds" / ".tmp-"))
    assert env["HOME"] != os.environ.get("HOME")


async def test_cancellation_mid_build_leaves_no_folder_and_no_process(tmp_path, wheels):
    script = '#!/bin/sh\nsleep 300 &\necho "child $!"\necho "started $$"\nsleep 300\n'
    root = content(tmp_path, {"postBuild": script})
    lines: list[str] = []
    b = builder(tmp_path, wheels, allow_post_build=True)
    task = asyncio.create_task(b.build(environment_key(root), root, SOURCE, lines.append))
    await wait_for(lambda: any(line.startswith("started ") for line in lines))
    pids = [int(line.split()[1]) for line in lines if line.startswith(("child ", "started "))]
    assert len(pids) == 2 and all(map(alive, pids))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(tmp_path) == []
    await wait_for(lambda: not any(map(alive, pids)), seconds=10)


async def test_timeout_fails_and_leaves_nothing(tmp_path, wheels):
    root = content(tmp_path, {"postBuild": "#!/bin/sh\necho waiting\nsleep 300\n"})
    b = builder(tmp_path, wheels, allow_post_build=True, timeout=2)
    with pytest.raises(BuildFailed, match=r"^the build took longer than 2 s$"):
        await b.build(environment_key(root), root, SOURCE, lambda line: None)
    assert leftovers(tmp_path) == []


async def test_a_rebuild_replaces_the_published_environment(tmp_path, wheels):
    root = content(tmp_path, {"requirements.txt": "tinypkg\n"})
    b = builder(tmp_path, wheels)
    key = environment_key(root)
    first = (await b.build(key, root, SOURCE, lambda line: None)).environment["venv"]
    old = real(first)
    write_wheel(wheels, version="2.0")
    result = await b.build(key, root, SOURCE, lambda line: None)
    assert "tinypkg==2.0" in result.resolved and not exists(old)
    assert len(list((tmp_path / "envs" / ".builds").iterdir())) == 1


async def test_isolated_base_sees_nothing_of_this_installation(tmp_path, wheels):
    root = content(tmp_path, {"requirements.txt": "tinypkg\n"})
    b = builder(tmp_path, wheels, base="isolated", isolated_packages=["tinypkg"])
    assert b.key_extra() != builder(tmp_path, wheels).key_extra()
    result = await b.build(environment_key(root), root, SOURCE, lambda line: None)
    code = "from importlib.util import find_spec as f; print(bool(f('tinypkg')), f('jupyterlab'))"
    assert run_python(result.environment["python"], code) == "True None"
    assert "jupyterlab" not in result.resolved and "tinypkg==1.0" in result.resolved
