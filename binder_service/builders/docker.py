"""The docker build backend: repo2docker with a container engine on this machine.

It builds every kind of repository repo2docker knows (apt.txt, R, Julia, conda, a
Dockerfile...) into an image named `DockerBuilder.image_prefix` + key, pushed when the
prefix names a registry (`DockerBuilder.push`). An image of a private launch (a user's
own token) holds the private repository: with `push` it goes to
`DockerBuilder.private_image_prefix` (a repository only the site can pull from), and
without one private launches are refused (`private_refusal`); without `push` it stays
in the local engine.

repo2docker builds the *fetched content* (a local folder), not the source URL: the
image holds exactly the bytes the environment key was computed over, nothing is fetched
twice, and archives went through the fetch worker's checks (no path escapes, size
limits). repo2docker runs with a private, empty working folder, because it reads
``repo2docker_config.py`` from its working folder and a repository must not configure
(or run code in) the builder that way. It runs with ``--json-logs``: each line is a JSON
object whose ``message`` goes to the build log, and whose ``phase: failed`` messages
give the reason of a failure.

`DockerBuilder.unavailable` asks the engine (``/_ping``, `DockerBuilder.probe_timeout`)
and remembers the answer for a minute: no engine answers on this machine (the docker
CLI is installed, no daemon runs), so the backend says so instead of failing builds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, validate

from egi_hub.procs import installed_script

from ..providers.base import Resolved
from .base import Builder, BuildFailed, BuildResult, run_process

__all__ = ["DockerBuilder", "Repo2dockerLog", "repo2docker_version"]

PASS_ENV = ("PATH", "HOME", "LANG", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY", "DOCKER_CONTEXT", "http_proxy", "https_proxy", "no_proxy",
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")  # fmt: skip
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(  # [host[:port]/]component[/component...][:tag]
    rf"(?:[a-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][\w.-]{{0,127}})?"
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def repo2docker_version() -> str:
    from importlib.metadata import version

    return version("jupyter-repo2docker")


def check_image_prefix(prefix: str) -> str:
    """``prefix`` if ``prefix + key`` is a valid image reference (``name:``, the key as
    the tag, or ``registry.example.org/binder/env-``), else `ValueError`."""
    if len(prefix) > 200 or not _REFERENCE.fullmatch(prefix + "0" * 40):
        raise ValueError(
            f"{prefix!r} cannot start an image name (lower case, e.g. 'egi-binder-env:')"
        )
    return prefix


def valid_optional_prefix(proposal: dict) -> str:
    """A trait validator's answer for an image prefix that may be empty: the prefix, or
    `TraitError` naming why it cannot start an image name (`check_image_prefix`)."""
    try:
        return proposal["value"] and check_image_prefix(proposal["value"])
    except ValueError as e:
        raise TraitError(str(e)) from None


class Repo2dockerLog:
    """repo2docker's ``--json-logs`` output, line by line: `feed` returns the text lines
    for the build log and remembers the failure messages, the buildpack and digests."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.lines: list[str] = []
        self.buildpack = ""
        self.digest = ""

    def feed(self, raw: str) -> list[str]:
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            text, phase = raw, ""
        else:
            text, phase = str(entry.get("message", "")), str(entry.get("phase", ""))
        lines = [line.rstrip("\r") for line in text.split("\n")]
        lines = [line.rsplit("\r", 1)[-1] for line in lines if line.strip()]
        for line in lines:
            if phase == "failed":
                self.failures.append(line)
            if match := re.search(r"Using (\w+) builder", line):
                self.buildpack = match.group(1)
            if ("pushing manifest" in line or "writing image" in line) and (
                found := _DIGEST.search(line)
            ):
                self.digest = found.group(0)
        self.lines += lines
        del self.lines[:-200]
        return lines

    def reason(self) -> str:
        """The one-line reason of a failed build."""
        useful = [f for f in self.failures if f.strip() and not f.startswith("Traceback")]
        if useful:
            return useful[-1].removeprefix("Error during build: ")
        return next((line for line in reversed(self.lines) if line.strip()), "no output")


class DockerBuilder(Builder):
    """repo2docker against the local container engine (see the module docstring)."""

    name = "docker"

    image_prefix = Unicode(
        "egi-binder-env:",
        help="""Image names are this + the environment key: 'name:' (the key is the tag)
        or 'registry.example.org/binder/env-'.""",
    ).tag(config=True)

    @validate("image_prefix")
    def _valid_prefix(self, proposal: dict) -> str:
        try:
            return check_image_prefix(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None

    push = Bool(
        False,
        help="Push each image (image_prefix names a registry this engine is logged in to).",
    ).tag(config=True)

    private_image_prefix = Unicode(
        "",
        help="""Where images of private launches (a user's own token) go: this + the
        environment key, in a repository only the site can pull from (an image holds its
        repository: whoever may pull or list image_prefix's registry would get a private
        one). Empty: with push, private launches are refused; without push, their
        images stay in the local engine under image_prefix.""",
    ).tag(config=True)

    @validate("private_image_prefix")
    def _valid_private_prefix(self, proposal: dict) -> str:
        return valid_optional_prefix(proposal)

    repo2docker = Unicode(
        help="The repo2docker command (default: the one installed beside this Python)."
    ).tag(config=True)

    @default("repo2docker")
    def _default_repo2docker(self) -> str:
        return installed_script("jupyter-repo2docker")

    user_id = Integer(1000, help="The uid of the user in the images (as mybinder: 1000).").tag(
        config=True
    )
    user_name = Unicode("jovyan", help="The user name in the images.").tag(config=True)

    extra_args = List(
        Unicode(),
        help="Extra arguments to repo2docker, e.g. ['--appendix', '...'].",
    ).tag(config=True)

    probe_timeout = Float(2.0, help="Seconds to wait for the engine's answer.").tag(config=True)

    _probe: tuple[float, str | None] = (0.0, None)

    def image(self, key: str, *, private: bool = False) -> str:
        """``key``'s image: under `private_image_prefix` for a ``private`` launch when
        one is set (with `push` it must be: `private_refusal`)."""
        if private and self.private_image_prefix:
            return f"{self.private_image_prefix}{key}"
        if private and self.push:  # never pushed where others may pull it
            raise BuildFailed(self.private_refusal() or "no private image prefix")
        return f"{self.image_prefix}{key}"

    def private_refusal(self) -> str | None:
        """Why private launches are refused (pushing, with no `private_image_prefix`)."""
        if not self.push or self.private_image_prefix:
            return None
        return (
            "this site does not launch private repositories: it pushes every image to a "
            "registry others may pull from (DockerBuilder.private_image_prefix is not set)"
        )

    def command(
        self, key: str, content: Path, source: Resolved | None = None, *, private: bool = False
    ) -> list[str]:
        """The repo2docker command line that builds ``content`` into ``image(key)``."""
        cmd = [self.repo2docker, "--no-run", "--json-logs"]
        cmd += ["--image-name", self.image(key, private=private)]
        cmd += ["--user-id", str(self.user_id), "--user-name", self.user_name]
        cmd += ["--label", f"eu.egi-hub.binder.key={key}"]
        if source is not None:
            cmd += ["--label", f"eu.egi-hub.binder.source={source.source}@{source.ref}"]
        if self.push:
            cmd.append("--push")
        return [*cmd, *self.extra_args, "--", str(content)]

    def key_extra(self) -> str:
        return "\0".join(
            [self.name, repo2docker_version(), str(self.user_id), self.user_name, *self.extra_args]
        )

    def unavailable(self) -> str | None:
        now = time.monotonic()
        if now - self._probe[0] < 60:
            return self._probe[1]
        self._probe = (now, self._ask_engine())
        return self._probe[1]

    def _ask_engine(self) -> str | None:
        if not shutil.which("docker"):
            return "no docker command (repo2docker drives the engine through it)"
        import docker

        try:
            client = docker.from_env(timeout=max(1, round(self.probe_timeout)))
            try:
                client.ping()
            finally:
                client.close()
        except Exception as e:  # the docker package raises many kinds; all mean "no engine"
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            problem = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            return f"no container engine answers at {where} ({problem})"
        return None

    def _env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env.setdefault("LANG", "C.UTF-8")
        return env

    async def build(
        self, key: str, content: Path, source: Resolved, log: Callable[[str], None],
        *, token: str | None = None,
    ) -> BuildResult:  # fmt: skip
        if why := await asyncio.to_thread(self.unavailable):
            raise BuildFailed(f"the docker builder cannot run here: {why}")
        parsed = Repo2dockerLog()

        def on_line(line: str) -> None:
            for text in parsed.feed(line):
                log(text)

        private = token is not None
        image = self.image(key, private=private)
        workdir = await asyncio.to_thread(tempfile.mkdtemp, prefix="egi-binder-r2d-")
        done = False
        try:
            async with asyncio.timeout(self.timeout):
                cmd = self.command(key, Path(content), source, private=private)
                code, _ = await run_process(cmd, cwd=workdir, env=self._env(), log=on_line)
                if code != 0:
                    raise BuildFailed(f"repo2docker failed: {parsed.reason()}")
                digest = await self._digest(image) or parsed.digest
            done = True
        except TimeoutError:
            raise BuildFailed(f"the build took longer than {self.timeout:g} s") from None
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
            if not done:
                await asyncio.shield(self._docker("image", "rm", "--force", image))
        summary = [f"image: {image}", f"digest: {digest}", f"repo2docker {repo2docker_version()}"]
        if parsed.buildpack:
            summary.append(f"buildpack: {parsed.buildpack}")
        environment = {"image": image, "digest": digest}
        return BuildResult(key, self.name, environment, "\n".join(summary) + "\n")

    async def _docker(self, *args: str) -> tuple[int, str]:
        out: list[str] = []
        try:
            code, _ = await run_process(
                ["docker", *args], cwd=tempfile.gettempdir(), env=self._env(), log=out.append
            )
        except OSError as e:
            return 127, str(e)
        return code, "\n".join(out)

    async def _inspect(self, image: str) -> dict | None:
        code, out = await self._docker("image", "inspect", "--format", "{{json .}}", image)
        if code != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    async def _digest(self, image: str) -> str:
        """The pushed digest (``RepoDigests``), else the local image id."""
        info = await self._inspect(image) or {}
        for repo_digest in info.get("RepoDigests") or []:
            if found := _DIGEST.search(str(repo_digest)):
                return found.group(0)
        found = _DIGEST.search(str(info.get("Id", "")))
        return found.group(0) if found else ""

    async def remove(self, key: str) -> None:
        await self._docker("image", "rm", "--force", self.image(key))

    async def present(self, result: BuildResult) -> bool:
        return await self._inspect(str(result.environment.get("image", ""))) is not None
