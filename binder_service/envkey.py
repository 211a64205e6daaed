"""The environment key: which files define a repository's environment, a hash of them, and
what the virtualenv builder can make of them.

Binder builds once per *environment*, not once per commit: the key is a SHA-256 of the
files repo2docker reads to build one, so a commit that only changes notebooks or data
launches the environment already built and only brings the new content. Which files
count is repo2docker's rule (its buildpacks, read for facts): if the repository has a
``binder/`` or ``.binder/`` folder, only the files there count; else the top level.
``setup.py``, ``pyproject.toml`` and ``DESCRIPTION`` count at the top level only, and
only without a binder folder (repo2docker ignores them then).

Some builds read more than those files: a repository that installs itself (``setup.py``,
or ``pyproject.toml`` with ``[project]`` and ``[build-system]``, which repo2docker runs
``pip install .`` for), a requirement that names a local path (``-e .``, ``./pkg``,
``-r other.txt``), an R package (``DESCRIPTION``), a ``Dockerfile`` (it may ``COPY``
anything) or a ``postBuild`` script (it may read anything). Its environment depends on
the whole source, so the key then covers every file except notebooks (``*.ipynb``) and
``.git``: a code change rebuilds, a notebook change still does not. Notebooks are
excluded because no build step of repo2docker reads them, and they are what people
change most.

Content is hostile: a file that defines the environment must be a regular file inside
the content (a symlinked ``requirements.txt`` pointing at ``/etc/passwd`` is refused,
never read), under a size cap; with whole-source keys no symlink may point outside.
Every refusal is `EnvironmentRefused` with a one-line reason.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import stat
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from egi_hub.names import CONTROL as _CONTROL

__all__ = [
    "ENVIRONMENT_FILES",
    "MAX_FILE_BYTES",
    "EnvironmentKind",
    "EnvironmentRefused",
    "Plan",
    "check_symlinks",
    "classify",
    "environment_files",
    "environment_key",
    "local_paths",
    "local_requirement",
    "names_local_path",
    "requirement_lines",
]

#: Files repo2docker reads from the binder folder (or the top level without one).
ENVIRONMENT_FILES = (
    "requirements.txt",
    "requirements3.txt",
    "environment.yml",
    "environment.yaml",
    "runtime.txt",
    "apt.txt",
    "postBuild",
    "start",
    "Project.toml",
    "JuliaProject.toml",
    "Manifest.toml",  # Julia: the exact versions repo2docker instantiates
    "JuliaManifest.toml",
    "REQUIRE",
    "install.R",
    "Pipfile",
    "Pipfile.lock",
    "Dockerfile",
    "default.nix",
)
#: Files repo2docker reads at the top level only, and only without a binder folder.
TOP_LEVEL_FILES = ("setup.py", "pyproject.toml", "DESCRIPTION")
MAX_FILE_BYTES = 4 * 2**20  # one environment file (a large Pipfile.lock is ~0.5 MiB)
MAX_SOURCE_FILES = 50_000  # whole-source keys: files hashed
MAX_SOURCE_BYTES = 4 * 2**30
KEY_VERSION = b"egi-hub binder environment key 1"


class EnvironmentRefused(ValueError):
    """Content whose environment cannot be keyed or built; ``str()`` is the reason."""


class EnvironmentKind(enum.StrEnum):
    """The repo2docker buildpack that builds the repository (its detection order)."""

    DOCKERFILE = "dockerfile"
    JULIA = "julia"
    NIX = "nix"
    R = "r"
    CONDA = "conda"
    PIPFILE = "pipfile"
    PYTHON = "python"


@dataclass(frozen=True)
class Plan:
    """What the content asks for, and what the virtualenv builder can do with it.

    - ``kind``: the repo2docker buildpack that would build it.
    - ``binder_dir``: ``""``, ``"binder"`` or ``".binder"``; ``files``: the environment
      files present, relative to the content.
    - ``whole_source``: why the build reads the whole source (``""``: it does not).
    - ``requirements``: the requirements file to ``pip install -r``; ``install_self``:
      ``pip install .`` the repository; ``environment_pip``: the pip part of
      ``environment.yml`` (``environment_dir``: the folder its paths are relative to);
      ``post_build``: the ``postBuild`` script.
    - ``needs_container``: why the virtualenv builder cannot build it (empty: it can).
    """

    kind: EnvironmentKind
    binder_dir: str
    files: tuple[str, ...]
    whole_source: str = ""
    requirements: str = ""
    install_self: bool = False
    environment_pip: tuple[str, ...] = ()
    environment_dir: str = ""
    post_build: str = ""
    needs_container: tuple[str, ...] = field(default=())


def _say(name: str) -> str:
    """A file name fit for a one-line reason."""
    return _CONTROL.sub("?", name)[:200]


def _inside(root: Path, path: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _binder_dir(root: Path) -> str:
    found = []
    for name in ("binder", ".binder"):
        path = root / name
        if not os.path.lexists(path):
            continue
        target = path.resolve()
        if not _inside(root, target):
            raise EnvironmentRefused(f"{name} is a symlink that points outside the repository")
        if target.is_dir():
            found.append(name)
    if len(found) == 2:
        raise EnvironmentRefused("the repository has both binder/ and .binder/: keep one")
    return found[0] if found else ""


def _read(root: Path, rel: str) -> bytes | None:
    """An environment file's bytes, ``None`` if absent; refuses escapes, odd file
    types and files over `MAX_FILE_BYTES`."""
    path = root / rel
    if not os.path.lexists(path):
        return None
    target = path.resolve()
    if not _inside(root, target):
        raise EnvironmentRefused(f"{_say(rel)} is a symlink that points outside the repository")
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return None  # a dangling symlink: repo2docker's os.path.exists says no too
    if not stat.S_ISREG(info.st_mode):
        raise EnvironmentRefused(f"{_say(rel)} is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise EnvironmentRefused(
            f"{_say(rel)} is larger than {MAX_FILE_BYTES // 2**20} MiB: not an environment file"
        )
    with open(target, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise EnvironmentRefused(f"{_say(rel)} grew while it was read")
    return data


def _scan(content: Path) -> tuple[Path, str, dict[str, bytes]]:
    root = Path(content).resolve(strict=True)
    if not root.is_dir():
        raise EnvironmentRefused("the content is not a directory")
    binder = _binder_dir(root)
    names = [f"{binder}/{n}" if binder else n for n in ENVIRONMENT_FILES]
    if not binder:
        names += TOP_LEVEL_FILES
    files = {}
    for rel in names:
        data = _read(root, rel)
        if data is not None:
            files[rel] = data
    return root, binder, files


def environment_files(content: Path) -> list[Path]:
    """The files that define the content's environment, as repo2docker picks them."""
    root, _, files = _scan(content)
    return [root / rel for rel in files]


def _text(files: dict[str, bytes], rel: str) -> str:
    return files[rel].decode("utf-8", errors="replace")


def requirement_lines(text: str) -> list[str]:
    """A requirements file's lines, continuation lines (ending with ``\\``) joined."""
    return re.sub(r"\\\r?\n", " ", text).splitlines()


def local_requirement(line: str) -> bool:
    """Whether a pip requirement line reads anything from the disk (`local_paths`)."""
    return bool(local_paths(line))


#: pip's options whose value is a path (or a URL): ``-e pkg``, ``-fwheels``, ``-r x.txt``.
_PATH_OPTIONS = ("-e", "--editable", "-r", "--requirement", "-c", "--constraint",
                 "-f", "--find-links")  # fmt: skip


def local_paths(line: str) -> list[tuple[str, str]]:
    """The (option, path) pairs a requirement line names locally: the value of a path
    option (``-e``, ``-r``, ``-c``, ``-f``), a ``file:`` URL anywhere (``pkg @ file:///x``,
    ``git+file:///x``), a requirement that is a path (``./pkg``, ``/abs``)."""
    words = line.split("#", 1)[0].split()
    found = []
    for i, word in enumerate(words):
        option, _, value = word.partition("=")
        if option not in _PATH_OPTIONS and word[:2] in _PATH_OPTIONS:  # "-e../x"
            option, value = word[:2], word[2:]
        if option in _PATH_OPTIONS:
            value = value or (words[i + 1] if i + 1 < len(words) else "")
        elif i == 0 and names_local_path(word):
            option, value = "", word
        elif "file:" in word:
            option, value = "", word
        else:
            continue
        if "file:" in value:
            value = value.split("file:", 1)[1]
            value = "/" + value.lstrip("/") if value.startswith("//") else value
        elif "://" in value:
            continue
        found.append((option, value))
    return found


#: What pip takes for a local archive when a requirement is a bare file name (pip's
#: ARCHIVE_EXTENSIONS).
LOCAL_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz",
                  ".tlz", ".tar.lz", ".tar.lzma", ".tar")  # fmt: skip


def names_local_path(word: str) -> bool:
    """Whether pip reads a requirement's first word from the disk: a path (``./pkg``,
    ``/abs``, ``pkgs/mypkg``, ``pkgs/../../x``: any ``/`` that is not in a URL) or an
    archive's file name (``helper-1.0.tar.gz``). A requirement name has neither."""
    if "://" in word:
        return False
    return word.startswith((".", "/")) or "/" in word or word.lower().endswith(LOCAL_ARCHIVES)


def _pyproject(root: Path, files: dict[str, bytes]) -> dict:
    if "pyproject.toml" not in files:
        return {}
    try:
        return tomllib.loads(_text(files, "pyproject.toml"))
    except tomllib.TOMLDecodeError as e:
        raise EnvironmentRefused(f"pyproject.toml is not valid TOML: {_say(str(e))}") from None


def _environment_yml(files: dict[str, bytes], binder: str) -> tuple[str, dict]:
    for name in ("environment.yml", "environment.yaml"):
        rel = f"{binder}/{name}" if binder else name
        if rel in files:
            try:
                data = yaml.safe_load(_text(files, rel))
            except yaml.YAMLError as e:
                problem = _say(str(e).splitlines()[0] if str(e) else "a YAML error")
                raise EnvironmentRefused(f"{name} is not valid YAML: {problem}") from None
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise EnvironmentRefused(f"{name} is not a mapping (name, channels, dependencies)")
            return rel, data
    return "", {}


def _whole_source(root: Path, binder: str, files: dict[str, bytes], pyproject: dict) -> str:
    """Why the build reads the whole source, or ``""``."""
    at = (binder + "/") if binder else ""
    if not binder and "setup.py" in files:
        return "setup.py (the repository installs itself)"
    if not binder and "project" in pyproject and "build-system" in pyproject:
        return "pyproject.toml with a build backend (the repository installs itself)"
    for name in ("requirements.txt", "requirements3.txt"):
        lines = requirement_lines(_text(files, at + name)) if at + name in files else []
        if any(map(local_requirement, lines)):
            return f"{name} names local files"
    rel, env = _environment_yml(files, binder)
    if rel and any(local_requirement(str(line)) for line in _pip_part(env)):
        return f"{Path(rel).name}'s pip part names local files"
    for name in ("Pipfile", "Pipfile.lock"):
        if at + name in files and re.search(r"\bpath\b", _text(files, at + name)):
            return f"{name} names local paths"
    if not binder and "DESCRIPTION" in files:
        return "DESCRIPTION (an R package installed from the repository)"
    if at + "Dockerfile" in files:
        return "a Dockerfile (it may copy any file)"
    if at + "postBuild" in files:
        return "postBuild (it may read any file)"
    return ""


def _pip_part(env: dict) -> list:
    pip: list = []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            pip = dep["pip"]
    return pip


def _walk(root: Path) -> Iterator[tuple[Path, os.DirEntry]]:
    """Every file, folder and symlink under ``root`` but ``.git``; symlinks are not
    followed, and refused if they point outside ``root``; so are odd file types."""
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                path = Path(entry.path)
                if entry.name == ".git":
                    continue
                if entry.is_symlink():
                    if not _inside(root, path.resolve()):
                        raise EnvironmentRefused(
                            f"{_say(str(path.relative_to(root)))} is a symlink that points "
                            "outside the repository"
                        )
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif not entry.is_file(follow_symlinks=False):
                    raise EnvironmentRefused(
                        f"{_say(str(path.relative_to(root)))} is not a file, folder or symlink"
                    )
                yield path, entry


def check_symlinks(content: Path) -> None:
    """Refuse content with a symlink that points outside it (or a file of an odd type)."""
    root = Path(content).resolve()
    for _ in _walk(root):
        pass


def _hash_source(root: Path, h: hashlib._Hash) -> None:
    """Every file but notebooks and ``.git``, in a stable order; symlinks as their target
    text (never followed)."""
    count = total = 0
    entries: list[tuple[bytes, bytes]] = []
    for path, entry in _walk(root):
        rel = os.fsencode(path.relative_to(root))
        if entry.is_symlink():
            entries.append((rel, b"L" + os.fsencode(os.readlink(path))))
        elif entry.is_file(follow_symlinks=False) and not entry.name.endswith(".ipynb"):
            info = entry.stat(follow_symlinks=False)
            count, total = count + 1, total + info.st_size
            if count > MAX_SOURCE_FILES or total > MAX_SOURCE_BYTES:
                raise EnvironmentRefused(
                    f"the repository is too large to key its environment (over "
                    f"{MAX_SOURCE_FILES} files or {MAX_SOURCE_BYTES // 2**30} GiB)"
                )
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(2**20):
                    digest.update(chunk)
            mode = b"X" if info.st_mode & 0o111 else b"F"
            entries.append((rel, mode + digest.digest()))
    for rel, what in sorted(entries):
        _update(h, rel, what)


def _update(h: hashlib._Hash, name: bytes, data: bytes) -> None:
    h.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big") + data)


def environment_key(content: Path, *, extra: str = "") -> str:
    """The environment key of ``content``: 40 hex digits of a SHA-256 over the
    environment files (relative name and bytes), the whole source but notebooks and
    ``.git`` when the build reads it (see the module docstring), and ``extra`` (the
    builder's settings, e.g. `Builder.key_extra`, so a change of base rebuilds)."""
    root, binder, files = _scan(content)
    whole = _whole_source(root, binder, files, _pyproject(root, files))
    h = hashlib.sha256(KEY_VERSION)
    _update(h, b"extra", extra.encode())
    for rel in sorted(files):
        _update(h, rel.encode(), files[rel])
    if whole:
        _update(h, b"whole source", b"")
        _hash_source(root, h)
    return h.hexdigest()[:40]


def _runtime(text: str) -> tuple[str, str, str]:
    """``runtime.txt``'s name, version and date (repo2docker's forms: name-version,
    name-version-yyyy-mm-dd, name-yyyy-mm-dd)."""
    parts = text.strip().split("-")
    if len(parts) not in (2, 4, 5) or not all(parts):
        raise EnvironmentRefused(f"runtime.txt is not valid: {_say(text.strip()[:80])!r}")
    version = parts[1] if len(parts) in (2, 5) else ""
    date = "-".join(parts[-3:]) if len(parts) in (4, 5) else ""
    return parts[0], version, date


def _python_matches(spec: str, here: tuple[int, int, int]) -> bool:
    """Whether this Python satisfies a conda python spec: ``=3.11`` and ``3.11`` (conda's
    fuzzy match, 3.11.*; a build string after a second ``=`` is ignored), ``==3.11.4``,
    ``>=3.9,<3.12``."""
    spec = spec.replace(" ", "")
    if spec.startswith("=") and not spec.startswith("=="):
        spec = spec[1:]
    if spec[:1].isdigit():
        spec = "==" + spec.split("=")[0].removesuffix(".*") + ".*"
    try:
        return Version(".".join(map(str, here))) in SpecifierSet(spec)
    except InvalidSpecifier:
        return False


def _conda_problems(env: dict, name: str, here: tuple[int, int, int]) -> list[str]:
    problems = []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            if set(dep) - {"pip"}:
                problems.append(f"{name} with a {_say(str(next(iter(dep))))} section")
            continue
        text = str(dep).split("::")[-1].strip()
        match = re.match(r"[A-Za-z0-9_.-]+", text)
        package = match.group(0).lower() if match else text
        rest = text[len(package) :].strip()
        if package == "pip":
            continue
        if package == "python" and (not rest or _python_matches(rest, here)):
            continue
        if package == "python":
            problems.append(
                f"{name} asking for python {_say(rest)} (this builder has {here[0]}.{here[1]})"
            )
        else:
            problems.append(f"{name} with the conda package {_say(package)}")
    return problems


def classify(
    content: Path,
    *,
    python: tuple[int, int, int] = sys.version_info[:3],
    allow_post_build: bool = False,
) -> Plan:
    """The content's `Plan`: what it asks for and, in ``needs_container``, each reason the
    virtualenv builder (Python ``python``; ``postBuild`` run only if
    ``allow_post_build``) cannot build it."""
    root, binder, files = _scan(content)
    at = (binder + "/") if binder else ""
    pyproject = _pyproject(root, files)
    env_rel, env = _environment_yml(files, binder)
    reasons: list[str] = []
    name = version = date = ""
    if at + "runtime.txt" in files:
        name, version, date = _runtime(_text(files, at + "runtime.txt"))
    has = lambda rel: at + rel in files  # noqa: E731
    if has("Dockerfile"):
        kind = EnvironmentKind.DOCKERFILE
    elif has("Project.toml") or has("JuliaProject.toml") or has("REQUIRE"):
        kind = EnvironmentKind.JULIA
    elif has("default.nix"):
        kind = EnvironmentKind.NIX
    elif (name == "r" and date) or (not binder and "DESCRIPTION" in files):
        kind = EnvironmentKind.R
    elif env_rel:
        kind = EnvironmentKind.CONDA
    elif has("Pipfile") or has("Pipfile.lock"):
        kind = EnvironmentKind.PIPFILE
    else:
        kind = EnvironmentKind.PYTHON
    labels = {
        EnvironmentKind.DOCKERFILE: "a Dockerfile",
        EnvironmentKind.JULIA: "Julia packages (Project.toml or REQUIRE)",
        EnvironmentKind.NIX: "a Nix environment (default.nix)",
        EnvironmentKind.R: "an R environment (DESCRIPTION or an R runtime.txt)",
        EnvironmentKind.PIPFILE: "a Pipfile (pipenv)",
    }
    if kind in labels:
        reasons.append(labels[kind])
    if has("apt.txt"):
        reasons.append("apt.txt (system packages)")
    if has("install.R") and kind != EnvironmentKind.R:
        reasons.append("install.R (R packages)")
    if has("start"):
        reasons.append("a start script")
    if name and (name != "python" or not (version == "3" or _same_minor(version, python))):
        asked = "-".join(p for p in (name, version) if p)
        here = f"python-{python[0]}.{python[1]}"
        reasons.append(f"runtime.txt asking for {_say(asked)} (this builder has {here})")
    if env_rel:
        reasons += _conda_problems(env, Path(env_rel).name, python)
    requires = (pyproject.get("project") or {}).get("requires-python") if not binder else None
    if isinstance(requires, str):
        try:
            if Version(".".join(map(str, python))) not in SpecifierSet(requires):
                reasons.append(
                    f"pyproject.toml requiring Python {_say(requires)} "
                    f"(this builder has {python[0]}.{python[1]})"
                )
        except InvalidSpecifier:
            raise EnvironmentRefused(
                f"pyproject.toml's requires-python is not valid: {_say(requires)!r}"
            ) from None
    if has("postBuild") and not allow_post_build:
        reasons.append("a postBuild script (this site runs them in the container builder only)")
    pip = _pip_part(env)
    if any(not isinstance(line, str) for line in pip):
        raise EnvironmentRefused(f"{Path(env_rel).name}'s pip part is not a list of strings")
    return Plan(
        kind=kind,
        binder_dir=binder,
        files=tuple(files),
        whole_source=_whole_source(root, binder, files, pyproject),
        requirements=at + "requirements.txt" if has("requirements.txt") else "",
        install_self=not binder
        and ("setup.py" in files or ("project" in pyproject and "build-system" in pyproject)),
        environment_pip=tuple(pip),
        environment_dir=binder,
        post_build=at + "postBuild" if has("postBuild") else "",
        needs_container=tuple(reasons),
    )


def _same_minor(version: str, python: tuple[int, int, int]) -> bool:
    parts = version.split(".")
    return parts[:2] == [str(python[0]), str(python[1])]
