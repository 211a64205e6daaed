"""The virtualenv build backend: the embedded default of the local stack.

It builds what pip can: ``requirements.txt``, a repository that installs itself
(``pip install .``) and the pip part of ``environment.yml``; anything else (apt.txt,
R, Julia, a Dockerfile, conda packages, another Python) fails at `VenvBuilder.check`
with "this repository needs the container builder: it has ..." (`envkey.classify`).

Two bases:

- ``share`` (default): the new virtualenv sees this installation's site-packages after
  its own (a ``.pth`` file runs ``site.addsitedir``, so editable installs work too), so
  JupyterLab, jupyterhub, ipykernel and egi-hub's extensions come from here and the
  repository's requirements win where they differ (pip installs its own version into
  the virtualenv and never touches this one). Builds take seconds.
- ``isolated``: ``pip install`` `VenvBuilder.isolated_packages` (jupyterhub of this
  version, JupyterLab, ipykernel) into the virtualenv, then the repository's.

Layout under `VenvBuilder.envs_dir`: ``<key>`` is a symlink to ``.builds/<key>-<random>``,
made by an atomic rename once the build is complete (virtualenvs cannot be moved: their
scripts name their path). The real folder holds ``pip-freeze.txt`` and, written last, the
marker ``.egi-binder-built.json``; a folder without it is half-built and is removed
(`VenvBuilder.clean`). ``share/jupyter/kernels/python3`` in it is a kernel running the
virtualenv's Python: a launch puts ``<venv>/share/jupyter`` first on ``JUPYTER_PATH``
and ``<venv>/bin`` first on ``PATH``.

pip never runs with the service's environment: PATH, LANG, proxy and CA variables only,
HOME and TMPDIR in a private folder removed after the build, no ``PIP_*`` but those the
site's `VenvBuilder.pip_args` imply, no ``JUPYTERHUB_*``. Requirements are installed
with the content as working folder (as repo2docker does), and every local path they
name must stay inside the content (``-e .`` is fine, ``-e ../x`` or ``/abs`` is refused).
A build that reads the whole source (a package, local requirements, postBuild: see
`envkey`) runs in a private copy of the content, so the content a session gets holds no
build artefacts (``build/``, ``*.egg-info``, ``__pycache__``) and keeps its key; there,
editable local requirements (``-e .``) are installed as regular ones (the copy is
removed after the build, and a change of that code makes a new key anyway).
pip still runs the build code of the repository and of any sdist it installs, as this
service's user: the venv builder is for trusted users on one machine; the kubernetes
builder builds in a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from traitlets import Bool, CaselessStrEnum, List, Unicode, default

from .. import envkey
from ..providers.base import Resolved
from .base import Builder, BuildFailed, BuildResult, NeedsContainer, one_line, run_process

__all__ = ["MARKER", "VenvBuilder"]

MARKER = ".egi-binder-built.json"
PASS_ENV = ("LANG", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
            "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip
_BOX = "\u2502\u2570\u2500>\u00d7 "  # the frame of pip's error boxes
_ERROR = re.compile(r"(ERROR|error|\w*(Error|Exception)):")
_GENERIC = re.compile(
    r"subprocess-exited-with-error|metadata-generation-failed|failed-wheel-build|"
    r"Failed building wheel|Failed to build|Could not build wheels|See above for"
)
_COPY = (  # symlinks stay links (envkey refused those leaving the content), no .git
    "import shutil, sys; "
    "shutil.copytree(*sys.argv[1:], symlinks=True, ignore=shutil.ignore_patterns('.git'))"
)
_READ = "import sys, sysconfig as s; print('%d.%d' % sys.version_info[:2], s.get_path('purelib'))"


def nolog(line: str) -> None:
    """A log for steps whose output is not the user's business."""


def _base_python() -> str:
    return getattr(sys, "_base_executable", "") or sys.executable


def failure_line(tail: list[str]) -> str:
    """pip's last meaningful line: its last error that is not one of its generic ones
    (``error: subprocess-exited-with-error``...), else the last line with text."""
    lines = [line.strip().lstrip(_BOX).strip() for line in tail if line.strip()]
    errors = [line for line in lines if _ERROR.match(line) and not _GENERIC.search(line)]
    return (errors or lines or [""])[-1].removeprefix("ERROR: ")


def _regular(line: str) -> str:
    """An editable requirement of a local path as a regular one (``-e ./pkg`` ->
    ``./pkg``): builds run in a copy of the content that is gone afterwards."""
    words = line.split("#", 1)[0].split()
    if words and words[0].partition("=")[0] in ("-e", "--editable"):
        value = words[0].partition("=")[2] or " ".join(words[1:])
        if value and "://" not in value and not value.startswith("file:"):
            return value
    return line


def check_requirements(
    root: Path, rel: str, cwd: Path, *, rewrite: bool = False, depth: int = 0
) -> None:
    """Refuse a requirements file (``root/rel``) whose local paths leave ``root``:
    ``-r``/``-c`` relative to the file's folder (those files are checked too), others
    relative to ``cwd``. ``rewrite``: make its editable local requirements regular."""
    if depth > 5:
        raise BuildFailed(f"{rel}: requirement files nested more than 5 deep")
    path = (root / rel).resolve()
    lines = envkey.requirement_lines(path.read_text(errors="replace"))
    for number, line in enumerate(lines, 1):
        for option, value in envkey.local_paths(line):
            nested = option in ("-r", "--requirement", "-c", "--constraint")
            target = ((path.parent if nested else cwd) / value).resolve()
            if value.startswith("/") or not target.is_relative_to(root):
                raise BuildFailed(
                    f"{rel} line {number} names {one_line(value, 80)!r}, outside the repository"
                )
            if nested and target.is_file():
                if target.stat().st_size > envkey.MAX_FILE_BYTES:
                    raise BuildFailed(f"{rel} line {number} names a file too large to read")
                inner = str(target.relative_to(root))
                check_requirements(root, inner, cwd, rewrite=rewrite, depth=depth + 1)
    if rewrite and (regular := [_regular(line) for line in lines]) != lines:
        path.write_text("\n".join(regular) + "\n")


def _discard(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def _write_share_pth(site_packages: str) -> None:
    """Make this installation's site-packages follow the virtualenv's own (``.pth``
    files there, e.g. editable installs, are read too)."""
    here = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))
    lines = [f"import site; site.addsitedir({p!r})" for p in here]
    Path(site_packages, "_egi_hub_share.pth").write_text("\n".join(lines) + "\n")


def _environment_requirements(root: Path, cwd: Path, pip: tuple[str, ...], home: Path) -> Path:
    """environment.yml's pip part as a requirements file in ``home``: local paths must
    stay inside ``root``; ``-r``/``-c`` become absolute (the file is not beside them)."""
    lines = []
    for line in pip:
        for option, value in envkey.local_paths(line):
            target = (cwd / value).resolve()
            if value.startswith("/") or not target.is_relative_to(root):
                raise BuildFailed(
                    f"environment.yml's pip part names {one_line(value, 80)!r}, "
                    "outside the repository"
                )
            if option in ("-r", "--requirement", "-c", "--constraint"):
                line = f"{option} {target}"
        lines.append(_regular(line))
    requirements = home / "environment-pip.txt"
    requirements.write_text("\n".join(lines) + "\n")
    return requirements


def _executable(script: Path) -> Path:
    if not os.access(script, os.X_OK):  # repo2docker makes postBuild executable too
        script.chmod(script.stat().st_mode | 0o111)
    return script


def _finish(venv: Path, link: Path, freeze: str, marker: dict) -> None:
    """The kernel, pip-freeze.txt and, last, the marker."""
    _kernel(venv, link)
    (venv / "pip-freeze.txt").write_text(freeze + "\n")
    (venv / MARKER).write_text(json.dumps(marker) + "\n")


def _kernel(venv: Path, link: Path) -> None:
    """A ``python3`` kernel running the virtualenv's Python (by its published path),
    found first when ``<venv>/share/jupyter`` leads ``JUPYTER_PATH``."""
    folder = venv / "share" / "jupyter" / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    python = str(link / "bin" / "python")
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")


class VenvBuilder(Builder):
    """Builds a virtualenv per environment key (see the module docstring)."""

    name = "venv"

    envs_dir = Unicode(
        "",
        help="""Folder holding the environments (the Binder service sets it to
        <data_dir>/binder/envs). Empty: the backend is unavailable.""",
    ).tag(config=True)

    base = CaselessStrEnum(
        ["share", "isolated"],
        "share",
        help="""'share': environments see this installation's packages (JupyterLab,
        jupyterhub, ipykernel) after their own; builds take seconds. 'isolated': install
        isolated_packages into each environment.""",
    ).tag(config=True)

    isolated_packages = List(
        Unicode(),
        help="What an 'isolated' environment gets before the repository's requirements.",
    ).tag(config=True)

    @default("isolated_packages")
    def _default_isolated_packages(self) -> list[str]:
        import jupyterhub

        return [f"jupyterhub=={jupyterhub.__version__}", "jupyterlab", "ipykernel"]

    pip_args = List(
        Unicode(),
        help="""Extra arguments to every pip install, e.g. ["--index-url",
        "https://pypi.example.org/simple"] for a site mirror.""",
    ).tag(config=True)

    allow_post_build = Bool(
        False,
        help="""Run a repository's postBuild script (as this service's user). Off: such a
        repository needs the container builder.""",
    ).tag(config=True)

    python = Unicode(
        help="The Python that makes the virtualenvs (default: this one's base interpreter)."
    ).tag(config=True)

    @default("python")
    def _default_python(self) -> str:
        return _base_python()

    def unavailable(self) -> str | None:
        if not self.envs_dir:
            return "no folder for environments (VenvBuilder.envs_dir) is set"
        if not shutil.which(self.python):
            return f"the Python {self.python!r} is not there"
        return None

    def key_extra(self) -> str:
        import jupyterhub

        here = ".".join(map(str, sys.version_info[:3]))
        from egi_hub._version import __version__

        versions = f"jupyterhub {jupyterhub.__version__}, egi-hub {__version__}"
        parts = [self.name, self.base, here, self.python, versions]
        parts += self.pip_args + (self.isolated_packages if self.base == "isolated" else [])
        return "\0".join([*parts, f"postBuild {self.allow_post_build}"])

    def plan(self, content: Path) -> envkey.Plan:
        """The content's plan; `NeedsContainer` or `BuildFailed` if it cannot be built."""
        try:
            plan = envkey.classify(
                content, python=sys.version_info[:3], allow_post_build=self.allow_post_build
            )
        except envkey.EnvironmentRefused as e:
            raise BuildFailed(str(e)) from None
        if plan.needs_container:
            raise NeedsContainer(
                "this repository needs the container builder: it has "
                + "; ".join(plan.needs_container)
            )
        root = Path(content).resolve()
        try:
            if plan.whole_source:  # pip install . reads (and packs) every file
                envkey.check_symlinks(root)
        except envkey.EnvironmentRefused as e:
            raise BuildFailed(str(e)) from None
        if plan.requirements:
            check_requirements(root, plan.requirements, root)
        return plan

    def check(self, content: Path) -> None:
        self.plan(content)

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not key.isalnum() or not key.isascii():
            raise BuildFailed("an environment key is letters and digits only")
        envs = Path(self.envs_dir).absolute()
        return envs / key, envs / ".builds"

    def _env(self, venv: Path, home: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env.setdefault("LANG", "C.UTF-8")
        env.update(
            PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            HOME=str(home),
            TMPDIR=str(home),
            VIRTUAL_ENV=str(venv),
            PYTHONNOUSERSITE="1",
            PIP_CACHE_DIR=str(Path(self.envs_dir).absolute() / ".pip-cache"),
        )
        return env

    async def _run(
        self, what: str, cmd: list[str], cwd: Path, env: dict, log: Callable, keep: int = 200
    ) -> str:
        log(f"$ {' '.join(cmd)}")
        code, tail = await run_process(cmd, cwd=cwd, env=env, log=log, keep=keep)
        if code != 0:
            raise BuildFailed(f"{what} failed: {failure_line(tail) or f'exit code {code}'}")
        return "\n".join(tail)

    def _prepare(self, key: str) -> tuple[Path, Path, Path]:
        link, builds = self._paths(key)
        builds.mkdir(parents=True, exist_ok=True)
        venv = builds / f"{key}-{secrets.token_hex(4)}"
        home = builds / f".tmp-{venv.name}"
        home.mkdir(mode=0o700)
        return link, venv, home

    @staticmethod
    def _publish(link: Path, venv: Path) -> None:
        """``link`` -> ``venv``, atomically (a rename over the old link, if any)."""
        staging = link.with_name(f".{link.name}.link-{secrets.token_hex(4)}")
        staging.symlink_to(venv.relative_to(link.parent))
        old = link.resolve() if link.is_symlink() else None
        os.replace(staging, link)
        if old is not None and old != venv:
            shutil.rmtree(old, ignore_errors=True)

    async def build(
        self, key: str, content: Path, source: Resolved, log: Callable[[str], None],
        *, token: str | None = None,
    ) -> BuildResult:  # fmt: skip
        plan = await asyncio.to_thread(self.plan, content)
        link, venv, home = await asyncio.to_thread(self._prepare, key)
        published = False
        try:
            async with asyncio.timeout(self.timeout):
                root = await asyncio.to_thread(Path(content).resolve)
                result = await self._build(key, root, source, plan, link, venv, home, log)
            await asyncio.to_thread(self._publish, link, venv)
            published = True
            return result
        except TimeoutError:
            raise BuildFailed(f"the build took longer than {self.timeout:g} s") from None
        finally:
            await asyncio.shield(asyncio.to_thread(_discard, home, None if published else venv))

    async def _build(
        self,
        key: str,
        root: Path,
        source: Resolved,
        plan: envkey.Plan,
        link: Path,
        venv: Path,
        home: Path,
        log: Callable,
    ) -> BuildResult:
        env = self._env(venv, home)
        share = self.base == "share"
        python = str(venv / "bin" / "python")
        creating = [self.python, "-m", "venv", str(venv)]
        if share and find_spec("pip") is not None:
            creating.insert(3, "--without-pip")  # this installation's pip serves (seconds saved)
        await self._run("creating the virtualenv", creating, home, env, log)
        if share:
            out = await self._run("reading the virtualenv", [python, "-c", _READ], home, env, nolog)
            version, site = out.strip().splitlines()[-1].split(" ", 1)
            here = f"{sys.version_info[0]}.{sys.version_info[1]}"
            if version != here:  # this installation's packages are built for this Python
                raise BuildFailed(f"base 'share' needs Python {here}: {self.python} is {version}")
            _write_share_pth(site)
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        pip += ["--progress-bar", "off", *self.pip_args]
        if not share:
            await self._run("installing JupyterLab", pip + self.isolated_packages, home, env, log)
        if plan.whole_source:  # it reads (and may write) the source: build in a copy
            copy = home / "src"  # made by a child process, so a cancel ends it at once
            cmd = [sys.executable, "-c", _COPY, str(root), str(copy)]
            await self._run("copying the repository", cmd, home, env, nolog)
            root = copy
            if plan.requirements:
                await asyncio.to_thread(
                    check_requirements, root, plan.requirements, root, rewrite=True
                )
        if plan.requirements:
            what = f"installing {plan.requirements}"
            await self._run(what, [*pip, "-r", plan.requirements], root, env, log)
        if plan.environment_pip:
            cwd = root / plan.environment_dir
            requirements = _environment_requirements(root, cwd, plan.environment_pip, home)
            what = "installing environment.yml's pip part"
            await self._run(what, [*pip, "-r", str(requirements)], cwd, env, log)
        if plan.install_self:
            what = "installing the repository (pip install .)"
            await self._run(what, [*pip, "."], root, env, log)
        if plan.post_build:
            script = _executable(root / plan.post_build)
            await self._run("postBuild", [str(script)], root, env, log)
        freeze = await self._run(
            "pip freeze",
            [python, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
            home,
            env,
            nolog,
            keep=100_000,
        )
        if plan.whole_source:  # "pkg @ file:///<the copy, now gone>": say where it came from
            origin = f"git+{source.source}@{source.ref}" if source.provider == "git" else ""
            freeze = freeze.replace(root.as_uri(), origin or source.source)
        marker = {"key": key, "built": time.time(), "base": self.base, "python": python}
        await asyncio.to_thread(_finish, venv, link, freeze, marker)
        environment = {
            "venv": str(link),
            "python": str(link / "bin" / "python"),
            "jupyter_path": str(link / "share" / "jupyter"),
        }
        if self.base == "share":  # where the shared JupyterLab's data and config live
            environment["shared_prefix"] = sys.prefix
        return BuildResult(key, self.name, environment, freeze)

    async def remove(self, key: str) -> None:
        await asyncio.to_thread(self._remove, key)

    def _remove(self, key: str) -> None:
        link, _ = self._paths(key)
        target = link.resolve() if link.is_symlink() else None
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        _discard(target)

    async def present(self, result: BuildResult) -> bool:
        link, _ = self._paths(result.key)
        return await asyncio.to_thread((link / MARKER).is_file)

    def clean(self, building: set[str] = frozenset()) -> list[str]:
        """Remove what no published key uses: half-built folders (no marker, or not the
        target of ``<key>``) and links to nothing; keys in ``building`` are left. Call at
        start-up, before any build. Returns the names removed."""
        envs = Path(self.envs_dir).absolute()
        builds = envs / ".builds"
        used = set()
        removed = []
        for link in envs.iterdir() if envs.is_dir() else []:
            if link.is_symlink():
                target = link.resolve()
                if (target / MARKER).is_file() and target.parent == builds:
                    used.add(target.name)
                elif link.name not in building:
                    link.unlink()
                    removed.append(link.name)
        for folder in builds.iterdir() if builds.is_dir() else []:
            key = folder.name.removeprefix(".tmp-").rsplit("-", 1)[0]
            if folder.name not in used and key not in building:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed
