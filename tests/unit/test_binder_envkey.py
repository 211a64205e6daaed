"""The environment key and the venv plan (binder_service.envkey) on hostile and ordinary
repositories: which files count (repo2docker's rule), what changes the key and what does
not, symlinks, huge files, odd names, and what the virtualenv builder can build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from egi_hub.binder_service.envkey import (
    EnvironmentKind,
    EnvironmentRefused,
    check_symlinks,
    classify,
    environment_files,
    environment_key,
    local_requirement,
)

PY = (3, 11, 7)


def repo(tmp_path: Path, files: dict[str, str | bytes], name: str = "repo") -> Path:
    root = tmp_path / name
    root.mkdir()
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    return root


def names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in environment_files(root))


def test_top_level_files_count_without_a_binder_folder(tmp_path):
    root = repo(
        tmp_path,
        {
            "requirements.txt": "numpy\n",
            "apt.txt": "curl\n",
            "setup.py": "",
            "README.md": "hi",
            "analysis.ipynb": "{}",
            "data/requirements.txt": "not this one",
        },
    )
    assert names(root) == ["apt.txt", "requirements.txt", "setup.py"]


@pytest.mark.parametrize("folder", ["binder", ".binder"])
def test_a_binder_folder_is_the_only_place_read(tmp_path, folder):
    root = repo(
        tmp_path,
        {
            "requirements.txt": "ignored\n",
            "setup.py": "ignored",
            "pyproject.toml": "[project]\nname='x'\n",
            "DESCRIPTION": "ignored",
            f"{folder}/requirements.txt": "numpy\n",
            f"{folder}/apt.txt": "curl\n",
        },
    )
    assert names(root) == [f"{folder}/apt.txt", f"{folder}/requirements.txt"]
    key = environment_key(root)
    (root / "requirements.txt").write_text("changed at the top: not read\n")
    (root / "setup.py").write_text("changed")
    assert environment_key(root) == key


def test_binder_and_dot_binder_together_are_refused(tmp_path):
    root = repo(tmp_path, {"binder/requirements.txt": "a", ".binder/requirements.txt": "b"})
    with pytest.raises(EnvironmentRefused, match=r"both binder/ and \.binder/"):
        environment_key(root)


def test_key_ignores_notebooks_and_data_but_not_requirements_or_extra(tmp_path):
    root = repo(tmp_path, {"requirements.txt": "numpy\n", "a.ipynb": "{}", "data.csv": "1"})
    key = environment_key(root)
    assert len(key) == 40 and int(key, 16) >= 0
    (root / "a.ipynb").write_text('{"cells": []}')
    (root / "b.ipynb").write_text("{}")
    (root / "data.csv").write_text("2")
    (root / "README.md").write_text("new")
    assert environment_key(root) == key
    assert environment_key(root, extra="venv 3.11") != key
    (root / "requirements.txt").write_text("numpy==2.0\n")
    assert environment_key(root) != key


def test_same_environment_in_two_repositories_has_one_key(tmp_path):
    one = repo(tmp_path, {"requirements.txt": "numpy\n", "x.ipynb": "1"}, "one")
    two = repo(tmp_path, {"requirements.txt": "numpy\n", "y.py": "print()"}, "two")
    assert environment_key(one) == environment_key(two)
    three = repo(tmp_path, {"binder/requirements.txt": "numpy\n"}, "three")
    assert environment_key(three) != environment_key(one)  # the name is part of it


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"setup.py": "from setuptools import setup; setup()"}, "setup.py"),
        (
            {"pyproject.toml": "[project]\nname = 'x'\n[build-system]\nrequires = []\n"},
            "build backend",
        ),
        ({"requirements.txt": "-e .\n"}, "names local files"),
        ({"requirements.txt": "-r base.txt\n", "base.txt": "numpy"}, "names local files"),
        ({"requirements.txt": "numpy\n-e \\\n  .\n"}, "names local files"),
        ({"environment.yml": "dependencies:\n- pip:\n  - ./pkg\n"}, "pip part"),
        ({"Dockerfile": "FROM python\nCOPY . /src\n"}, "Dockerfile"),
        ({"postBuild": "python prepare.py\n"}, "postBuild"),
        ({"DESCRIPTION": "Package: x\n"}, "DESCRIPTION"),
    ],
)
def test_whole_source_keys_cover_code_but_not_notebooks(tmp_path, files, why):
    root = repo(tmp_path, {**files, "src/mod.py": "A = 1\n", "nb.ipynb": "{}"})
    assert why in classify(root, python=PY).whole_source
    key = environment_key(root)
    (root / "nb.ipynb").write_text('{"changed": true}')
    (root / "other.ipynb").write_text("{}")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert environment_key(root) == key, "a notebook-only commit keeps the key"
    (root / "src" / "mod.py").write_text("A = 2\n")
    assert environment_key(root) != key, "a code change rebuilds"


def test_plain_pyproject_without_build_backend_is_not_whole_source(tmp_path):
    root = repo(tmp_path, {"pyproject.toml": "[tool.ruff]\nline-length = 100\n", "a.py": "1"})
    assert classify(root, python=PY).whole_source == ""
    key = environment_key(root)
    (root / "a.py").write_text("2")
    assert environment_key(root) == key


def test_whole_source_key_sees_modes_and_symlinks(tmp_path):
    root = repo(tmp_path, {"setup.py": "", "run.sh": "echo"})
    key = environment_key(root)
    (root / "run.sh").chmod(0o755)
    executable = environment_key(root)
    assert executable != key
    (root / "link").symlink_to("run.sh")
    assert environment_key(root) not in (key, executable)


def test_symlinked_requirements_to_etc_passwd_is_refused_unread(tmp_path, monkeypatch):
    root = repo(tmp_path, {})
    (root / "requirements.txt").symlink_to("/etc/passwd")
    opened = []
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k)
    )
    with pytest.raises(
        EnvironmentRefused, match=r"requirements.txt is a symlink that points outside"
    ):
        environment_key(root)
    assert "/etc/passwd" not in opened
    with pytest.raises(EnvironmentRefused, match="outside"):
        classify(root)


def test_relative_escape_and_binder_folder_symlinks_are_refused(tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "requirements.txt").write_text("secret\n")
    root = repo(tmp_path, {})
    (root / "binder").symlink_to("../secret")
    with pytest.raises(EnvironmentRefused, match="binder is a symlink that points outside"):
        environment_key(root)
    (root / "binder").unlink()
    (root / "environment.yml").symlink_to("../secret/requirements.txt")
    with pytest.raises(EnvironmentRefused, match=r"environment.yml is a symlink"):
        environment_files(root)


def test_symlinks_inside_the_content_are_read_as_their_target(tmp_path):
    root = repo(tmp_path, {"env/reqs.txt": "numpy\n"})
    (root / "requirements.txt").symlink_to("env/reqs.txt")
    plain = repo(tmp_path, {"requirements.txt": "numpy\n"}, "plain")
    assert environment_key(root) == environment_key(plain)
    (root / "apt.txt").symlink_to("missing.txt")  # dangling: repo2docker sees no file
    assert names(root) == ["requirements.txt"]


def test_whole_source_refuses_any_escaping_symlink(tmp_path):
    root = repo(tmp_path, {"setup.py": "", "data/x.csv": "1"})
    (root / "data" / "shadow").symlink_to("/etc/shadow")
    with pytest.raises(EnvironmentRefused, match=r"data/shadow is a symlink that points outside"):
        environment_key(root)
    with pytest.raises(EnvironmentRefused):
        check_symlinks(root)
    plain = repo(tmp_path, {"requirements.txt": "numpy\n"}, "plain")
    (plain / "shadow").symlink_to("/etc/shadow")  # never read: the key does not need it
    assert environment_key(plain) == environment_key(
        repo(tmp_path, {"requirements.txt": "numpy\n"}, "p2")
    )


def test_huge_environment_file_is_refused_with_a_reason(tmp_path):
    root = repo(tmp_path, {})
    with open(root / "requirements.txt", "wb") as f:
        f.truncate(5 * 2**20)  # sparse: no disk used
    with pytest.raises(EnvironmentRefused, match=r"requirements.txt is larger than 4 MiB"):
        environment_key(root)


def test_fifo_and_folder_named_as_environment_files_are_refused(tmp_path):
    root = repo(tmp_path, {})
    os.mkfifo(root / "requirements.txt")  # reading it would block forever
    with pytest.raises(EnvironmentRefused, match=r"requirements.txt is not a regular file"):
        environment_key(root)
    other = repo(tmp_path, {"apt.txt/x": "1"}, "other")
    with pytest.raises(EnvironmentRefused, match=r"apt.txt is not a regular file"):
        environment_key(other)


def test_odd_file_names_are_keyed_and_reasons_stay_one_line(tmp_path):
    root = repo(tmp_path, {"setup.py": ""})
    (root / "new\nline.py").write_text("1")
    (root / "tab\there").write_text("1")
    (root / os.fsdecode(b"latin-\xe9.py")).write_text("1")
    key = environment_key(root)
    assert environment_key(root) == key
    (root / "new\nline.py").write_text("2")
    assert environment_key(root) != key
    (root / "evil\n\x1b[31mname").symlink_to("/etc/passwd")
    with pytest.raises(EnvironmentRefused) as info:
        environment_key(root)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_a_fifo_in_whole_source_content_is_refused(tmp_path):
    root = repo(tmp_path, {"setup.py": ""})
    os.mkfifo(root / "pipe")
    with pytest.raises(EnvironmentRefused, match="pipe is not a file, folder or symlink"):
        environment_key(root)


@pytest.mark.parametrize(
    ("line", "local"),
    [
        ("numpy==2.0", False),
        ("-e .", True),
        ("--editable=./pkg", True),
        ("./pkg", True),
        ("../outside", True),
        ("/abs/path", True),
        ("-r other.txt", True),
        ("--requirement=other.txt", True),
        ("-c constraints.txt", True),
        ("pkg @ file:///tmp/x.whl", True),
        ("git+https://github.com/a/b", False),
        ("--pre", False),
        ("# -e .", False),
        ("--index-url https://pypi.example.org/simple", False),
        ("-e.", True),
        ("-e../x", True),
        ("-fwheels", True),  # pip resolves it beside the requirements file
        ("-f./wheels", True),
    ],
)
def test_local_requirement(line, local):
    assert local_requirement(line) is local


def test_plain_requirements_plan(tmp_path):
    root = repo(tmp_path, {"requirements.txt": "numpy\n"})
    plan = classify(root, python=PY)
    assert plan.kind == EnvironmentKind.PYTHON
    assert (plan.requirements, plan.install_self, plan.needs_container) == (
        "requirements.txt",
        False,
        (),
    )


def test_no_environment_files_is_the_default_python_plan(tmp_path):
    plan = classify(repo(tmp_path, {"nb.ipynb": "{}"}), python=PY)
    assert plan.kind == EnvironmentKind.PYTHON and plan.needs_container == () and not plan.files


def test_package_plan_installs_itself(tmp_path):
    pyproject = "[project]\nname='x'\nrequires-python='>=3.10'\n[build-system]\nrequires=[]\n"
    plan = classify(repo(tmp_path, {"pyproject.toml": pyproject}), python=PY)
    assert plan.install_self and plan.needs_container == ()
    newer = pyproject.replace(">=3.10", ">=3.12")
    plan = classify(repo(tmp_path, {"pyproject.toml": newer}, "newer"), python=PY)
    assert plan.needs_container == (
        "pyproject.toml requiring Python >=3.12 (this builder has 3.11)",
    )


def test_environment_yml_pip_part_and_python(tmp_path):
    yml = (
        "name: x\nchannels: [conda-forge]\n"
        "dependencies:\n- python=3.11\n- pip\n- pip:\n  - tinypkg\n  - -e .\n"
    )
    plan = classify(repo(tmp_path, {"environment.yml": yml}), python=PY)
    assert plan.kind == EnvironmentKind.CONDA
    assert plan.environment_pip == ("tinypkg", "-e .") and plan.needs_container == ()


@pytest.mark.parametrize(
    ("dependency", "ok"),
    [
        ("python", True),
        ("python=3.11", True),
        ("python 3.11.*", True),
        ("python>=3.9", True),
        ("python>=3.9,<3.12", True),
        ("python==3.11.7", True),
        ("conda-forge::python=3.11=h123_0", True),
        ("python=3.10", False),
        ("python=3.1", False),
        ("python>=3.12", False),
        ("numpy", False),
        ("r-base", False),
    ],
)
def test_environment_yml_conda_packages(tmp_path, dependency, ok):
    root = repo(tmp_path, {"environment.yml": f"dependencies:\n- {dependency}\n"})
    reasons = classify(root, python=PY).needs_container
    assert (reasons == ()) is ok, reasons


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"apt.txt": "curl\n", "requirements.txt": "x"}, "apt.txt (system packages)"),
        ({"install.R": "install.packages('x')"}, "install.R (R packages)"),
        ({"runtime.txt": "r-2023-01-01"}, "an R environment"),
        ({"runtime.txt": "r-4.3-2023-01-01"}, "an R environment"),
        ({"runtime.txt": "python-3.10"}, "runtime.txt asking for python-3.10"),
        ({"runtime.txt": "julia-1.9"}, "runtime.txt asking for julia-1.9"),
        ({"Project.toml": "[deps]\n"}, "Julia packages"),
        ({"REQUIRE": "julia 1.0\n"}, "Julia packages"),
        ({"default.nix": "{}"}, "a Nix environment"),
        ({"Dockerfile": "FROM python"}, "a Dockerfile"),
        ({"Pipfile": "[packages]\n"}, "a Pipfile"),
        ({"start": '#!/bin/sh\nexec "$@"\n'}, "a start script"),
        ({"environment.yml": "dependencies:\n- numpy\n"}, "the conda package numpy"),
        ({"postBuild": "echo hi"}, "a postBuild script"),
        ({"binder/apt.txt": "curl", "binder/requirements.txt": "x"}, "apt.txt"),
    ],
)
def test_what_needs_the_container_builder(tmp_path, files, reason):
    reasons = classify(repo(tmp_path, files), python=PY).needs_container
    assert any(reason in r for r in reasons), reasons


def test_runtime_python_of_this_minor_is_fine(tmp_path):
    for i, runtime in enumerate(
        ["python-3.11", "python-3.11.2", "python-3", "python-3.11-2024-01-01"]
    ):
        root = repo(tmp_path, {"runtime.txt": runtime + "\n"}, f"r{i}")
        assert classify(root, python=PY).needs_container == (), runtime


def test_post_build_allowed_by_the_site(tmp_path):
    root = repo(tmp_path, {"postBuild": "echo hi", "requirements.txt": "x"})
    plan = classify(root, python=PY, allow_post_build=True)
    assert plan.needs_container == () and plan.post_build == "postBuild"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"runtime.txt": "python"}, "runtime.txt is not valid"),
        ({"runtime.txt": "python--3"}, "runtime.txt is not valid"),
        ({"pyproject.toml": "[project\n"}, "pyproject.toml is not valid TOML"),
        ({"environment.yml": "dependencies: [\n"}, "environment.yml is not valid YAML"),
        ({"environment.yml": "- a\n- b\n"}, "environment.yml is not a mapping"),
        ({"environment.yml": "dependencies:\n- pip:\n  - {a: 1}\n"}, "pip part is not a list"),
        (
            {"pyproject.toml": "[project]\nname='x'\nrequires-python='>>3'\n"},
            "requires-python is not valid",
        ),
    ],
)
def test_broken_environment_files_are_refused_with_a_reason(tmp_path, files, message):
    with pytest.raises(EnvironmentRefused, match=message):
        classify(repo(tmp_path, files), python=PY)


def test_content_that_is_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EnvironmentRefused, match="not a directory"):
        environment_key(tmp_path / "file")


@pytest.mark.parametrize(
    "line",
    ["pkgs/mypkg", "pkgs/../../outside", "helper-1.0.tar.gz", "wheels/x-1.0-py3-none-any.whl"],
)
def test_requirements_pip_reads_from_the_disk_count_as_local(line):
    """pip installs these from the repository's folder (or beyond it): they make the key
    cover the whole source, and the venv builder checks they stay inside."""
    assert local_requirement(line)


@pytest.mark.parametrize(
    "line", ["numpy==2.1", "pkg @ https://example.org/p-1.0.tar.gz", "x; sys_platform == 'linux'"]
)
def test_requirement_names_and_urls_are_not_local(line):
    assert not local_requirement(line)


@pytest.mark.parametrize(
    "line",
    [
        "-f wheels",
        "--find-links=wheels",
        "-fwheels",
        "--no-index --find-links wheels",
        "-e pkg",
        "--editable=pkg",
        "helper-1.0.tbz",
        "helper-1.0.tar.lzma",
    ],
)
def test_every_option_value_pip_reads_from_the_disk_is_local(line):
    """A repository cannot share a venv key with another while pip installs its own
    wheels or package folder: these make the key cover the whole source."""
    assert local_requirement(line)
