"""`KubeBinderMixin`: Binder sessions as pods of the image the service built.

Mixed into `EGIKubeSpawner` in place of `BinderSpawnerMixin` (see that module for the
ticket, the Binder profile and the idle timeout). A Binder start gets:

- the image of the ticket's build record (``<prefix><key>``), pinned by the digest the
  build recorded (``<image>@sha256:...``), so a relaunch runs exactly what was built
  even if the tag moved; ``IfNotPresent`` (`binder_image_pull_policy`) since a digest,
  or a tag that is a hash of the environment, never names other bytes;
- ``jupyterhub-singleuser`` as the command (`binder_cmd`), with the hub's arguments and
  `binder_args` (idle culling). KubeSpawner's default command is None (the image's
  ``CMD``, which for a repo2docker image is a plain ``jupyter notebook`` that knows
  nothing of the hub, and then KubeSpawner drops the arguments). repo2docker's
  environments ship the ``jupyterhub-singleuser`` package, and its images keep their
  ``ENTRYPOINT`` (``repo2docker-entrypoint``: a login shell's environment, the repo's
  ``start`` script, then the command), since KubeSpawner sets a container's ``args``
  only. BinderHub's authenticated mode likewise needs ``jupyterhub-singleuser`` in the
  images it builds;
- the labels ``egi-hub.eu/binder-key`` (the environment key) and ``egi-hub.eu/component:
  binder-session`` (KubeSpawner owns ``component`` and ``app.kubernetes.io/component``:
  its pod watch selects on them), the annotations ``egi-hub.eu/binder-spec`` and
  ``egi-hub.eu/binder-ref``, and the Binder profile's resources, applied before this
  by `BinderSpawnerMixin.load_profile`.

**Content.** An image holds the content of the commit (or record) it was built from.
When the launch is of that same ref, there is nothing more to do. A commit that
changed only notebooks has the same environment key and reuses that image; its content
is then brought in by an init container, which runs the same fetch as the service
(`binder_service.fetch`, the fetch worker and its checks and limits) from an image with
egi-hub installed (`binder_fetch_image`), into an ``emptyDir``. The session container
then copies it over the repository folder of the image (`binder_repo_dir`, repo2docker's
``REPO_DIR``) before it execs the server (a ``sh -c`` in front of `binder_cmd`).

Why a copy rather than the ``emptyDir`` mounted at the repository folder: that folder
is the user's home in a repo2docker image, and ``postBuild`` writes there (data it
downloads, ``pip install --user`` in ``~/.local``, built files next to the sources).
A volume over the folder would hide all of it; the copy keeps it and replaces the
sources. What the copy trades: a file deleted since the image's commit stays (the copy
adds and replaces, never deletes); the content takes node disk twice while the session
runs (the read-only copy on the volume is kept, so a restarted container, which starts
again from the image's folder, copies again); the image needs ``sh`` and ``cp``
(repo2docker images have them); and a ``Dockerfile`` build that puts the sources
elsewhere gets them in `binder_repo_dir` only.

**Private repositories** (a launch with a user's own token: the ticket says
``private``). The init container has no token and never gets one (``user_options`` and
the spawner's state are kept in the hub's database), so a private launch's content is
never fetched here: the service's key of a private build holds its commit, its image
holds that exact commit, and its ticket carries no fetch job. A private ticket whose
ref is not the image's is refused (400) rather than fetched.

The init container runs non-root (`binder_fetch_uid`), with no privilege escalation,
every capability dropped, the runtime's seccomp profile, a read-only root filesystem
(its ``/tmp`` is a small ``emptyDir``), resource requests and limits
(`binder_fetch_resources`), and an empty directory over the service account token's
path, so it holds no token even in a pod that mounts one. The job reaches it base64
encoded in an environment variable: no characters KubeSpawner's ``{}`` templates or the
kubelet's ``$(VAR)`` references would read. A failed fetch fails the start at once
with the fetch's one-line reason (rather than an init container restarting until the
start times out). The pod side is `main` (``python -m
egi_hub.binder_service.kube_launch``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from tornado import web
from traitlets import Dict, Float, Integer, List, Unicode

from egi_hub._version import __version__
from egi_hub.names import CONTROL as _CONTROL
from egi_hub.names import label_value

from .spawner import BinderSpawnerMixin

__all__ = [
    "COMPONENT",
    "FETCH_CONTAINER",
    "KEY_LABEL",
    "KubeBinderMixin",
    "content_failure",
    "main",
    "needs_content",
    "session_image",
]

KEY_LABEL = "egi-hub.eu/binder-key"
COMPONENT_LABEL = "egi-hub.eu/component"
COMPONENT = "binder-session"
SPEC_ANNOTATION = "egi-hub.eu/binder-spec"
REF_ANNOTATION = "egi-hub.eu/binder-ref"
FETCH_CONTAINER = "binder-content"
CONTENT_VOLUME = "egi-binder-content"
TMP_VOLUME = "egi-binder-fetch-tmp"
NO_TOKEN_VOLUME = "egi-binder-no-token"
#: Where the fetched content is, in the init container and (read-only) in the session's.
CONTENT_MOUNT = "/srv/egi-binder"
CONTENT_DIR = f"{CONTENT_MOUNT}/content"
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
JOB_ENV = "EGI_BINDER_FETCH_JOB"
TERMINATION_LOG = "/dev/termination-log"
#: Settings a Binder start changes: put back before any later start (VOSpawnerMixin).
BINDER_SETTINGS = ("image", "image_pull_policy", "cmd", "args", "init_containers", "volumes",
                   "volume_mounts", "extra_labels", "extra_annotations")  # fmt: skip
# $1: the fetched content, $2: the repository folder, then the server's command. No
# "$(" anywhere: the kubelet would read it as a reference to a variable.
COPY_SCRIPT = (
    'cp -R -P -f "$1"/. "$2"/ || { echo "egi-hub: the Binder content could not be copied '
    'into $2" >&2; exit 1; }; shift 2; exec "$@"'
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,500}")


def session_image(environment: Any) -> str:
    """The image a build record names, pinned by its digest when it has one; a 400 when
    the record has no image (a build of the ``venv`` builder)."""
    image = environment.get("image") if isinstance(environment, dict) else None
    if not isinstance(image, str) or not _IMAGE.fullmatch(image):
        raise web.HTTPError(
            400, "%s", "this Binder build has no image (it needs the kubernetes builder)"
        )
    digest = environment.get("digest")
    if isinstance(digest, str) and _DIGEST.fullmatch(digest) and "@" not in image:
        return f"{image}@{digest}"
    return image


def needs_content(launch: dict[str, Any]) -> bool:
    """Whether the content must be fetched into the pod: the launch is of another ref
    than the one the image was built from."""
    content = launch.get("content") or {}
    ref = content.get("ref") if isinstance(content, dict) else None
    return not (isinstance(ref, str) and ref and ref == launch.get("built_from"))


def content_failure(pod: dict[str, Any] | None) -> str | None:
    """Why the content init container of ``pod`` (a pod as KubeSpawner's watch keeps it)
    failed, or None while it has not failed."""
    status = (pod or {}).get("status") or {}
    for container in status.get("initContainerStatuses") or []:
        if container.get("name") != FETCH_CONTAINER:
            continue
        for state in (container.get("state"), container.get("lastState")):
            ended = (state or {}).get("terminated") or {}
            if ended.get("exitCode") not in (None, 0):
                lines = [_CONTROL.sub("", x).strip() for x in str(ended.get("message") or "")
                         .splitlines()]  # fmt: skip
                lines = [x for x in lines if x]
                reason = lines[-1] if lines else str(ended.get("reason") or "it failed")
                return reason[:500]
    return None


def _literal(text: str) -> str:
    """``text`` as KubeSpawner's ``str.format`` expansion of labels and annotations
    gives it back unchanged."""
    return text.replace("{", "{{").replace("}", "}}")


def _with(current: Any, key: str, *items: dict[str, Any]) -> Any:
    """``current`` (KubeSpawner takes a list, or a dict whose values it sorts by key)
    with ``items`` added last."""
    if isinstance(current, dict):
        added = {f"zz-{key}-{i}": item for i, item in enumerate(items)}
        return {**current, **added}
    return [*(current or []), *items]


class KubeBinderMixin(BinderSpawnerMixin):
    """Binder sessions on Kubernetes: the built image, fresh content when needed."""

    binder_settings = BINDER_SETTINGS

    binder_cmd = List(
        Unicode(),
        default_value=["jupyterhub-singleuser"],
        minlen=1,
        help="""
        The command of a Binder session's container (the hub's arguments follow). The
        default is what repo2docker images provide; their entrypoint stays in front.
        """,
    ).tag(config=True)

    binder_image_pull_policy = Unicode(
        "IfNotPresent",
        help="""
        The pull policy of Binder images. IfNotPresent: an image is pinned by its
        digest, or named by a hash of its environment, so a node's copy is the same.
        """,
    ).tag(config=True)

    binder_repo_dir = Unicode(
        "/home/jovyan",
        help="""
        The repository's folder in Binder images (repo2docker's REPO_DIR: the home of
        the image's user unless the build sets --target-repo-dir), where newer
        content is copied when a session reuses an image built from an earlier ref.
        """,
    ).tag(config=True)

    binder_fetch_image = Unicode(
        f"ghcr.io/egi/egi-hub:{__version__}",
        help="""
        An image with egi-hub (and git) installed, run by the init container that
        fetches a Binder session's content when its image was built from an earlier
        ref. Default: the hub's image of this release.
        """,
    ).tag(config=True)

    binder_fetch_image_pull_policy = Unicode(
        "IfNotPresent", help="The pull policy of binder_fetch_image."
    ).tag(config=True)

    binder_fetch_uid = Integer(
        1000,
        min=1,
        help="""
        The (non-root) user id the content fetch runs as; the session copies what it
        fetched, so its files must be readable by the session's user (they are).
        """,
    ).tag(config=True)

    binder_fetch_resources = Dict(
        {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        help="The content fetch's resources (a Kubernetes ResourceRequirements).",
    ).tag(config=True)

    binder_fetch_max_bytes = Integer(
        2 << 30,
        min=1,
        help="""
        The most bytes a session's content may hold when fetched in the pod (the
        volume holding it may take twice this, for a record's downloads and their
        extraction).
        """,
    ).tag(config=True)

    binder_fetch_max_files = Integer(
        100_000, min=1, help="The most files a session's content may hold."
    ).tag(config=True)

    binder_fetch_timeout = Float(
        600, min=1, help="Seconds the content fetch in the pod may take."
    ).tag(config=True)

    # True while a start waits for its pod: then a failed fetch ends the start.
    _egi_binder_starting = False

    async def apply_binder(self, launch: dict[str, Any]) -> None:
        if launch.get("private") and needs_content(launch):
            # (the service never signs one: a private build's key holds its commit)
            raise web.HTTPError(
                400, "%s", "a private Binder session runs only the image built from its exact "
                "commit (its content is never fetched in the pod, which has no token)"
            )  # fmt: skip
        self.image = session_image(launch.get("environment"))
        self.image_pull_policy = self.binder_image_pull_policy
        self.extra_labels = {**self.extra_labels, **self.binder_labels(launch)}
        self.extra_annotations = {**self.extra_annotations, **self.binder_annotations(launch)}
        self.args = [*self.args, *self.binder_args()]
        if not needs_content(launch):
            self.cmd = list(self.binder_cmd)
            return
        job = self.fetch_job(launch)
        self.cmd = ["sh", "-c", COPY_SCRIPT, "egi-binder-content", CONTENT_DIR,
                    self.binder_repo_dir, *self.binder_cmd]  # fmt: skip
        self.init_containers = _with(self.init_containers, "binder", self.fetch_init_container(job))
        self.volumes = _with(self.volumes, "binder", *self.content_volumes())
        mount = {"name": CONTENT_VOLUME, "mountPath": CONTENT_MOUNT, "readOnly": True}
        self.volume_mounts = _with(self.volume_mounts, "binder", mount)

    def binder_labels(self, launch: dict[str, Any]) -> dict[str, str]:
        key = label_value(str(launch.get("key") or ""))
        labels = {COMPONENT_LABEL: COMPONENT}
        if key:
            labels[KEY_LABEL] = key
        return labels

    def binder_annotations(self, launch: dict[str, Any]) -> dict[str, str]:
        content = launch.get("content")
        ref = content.get("ref") if isinstance(content, dict) else None
        found = {SPEC_ANNOTATION: launch.get("spec"), REF_ANNOTATION: ref}
        return {k: _literal(_CONTROL.sub("", v)[:2048]) for k, v in found.items()
                if isinstance(v, str) and v}  # fmt: skip

    def fetch_job(self, launch: dict[str, Any]) -> dict[str, Any]:
        """What the init container fetches, where to, and within which limits; a 400
        for a launch whose content cannot be fetched again."""
        content = launch.get("content") or {}
        fetch = content.get("fetch") if isinstance(content, dict) else None
        if not isinstance(fetch, dict) or not isinstance(fetch.get("provider"), str):
            raise web.HTTPError(
                400, "%s", "this Binder launch does not say how to fetch its content"
            )
        return {
            "spec": str(launch.get("spec") or ""),
            "label": str(launch.get("label") or content.get("ref") or "the content"),
            "ref": str(content.get("ref") or ""),
            "fetch": fetch,
            "dest": CONTENT_DIR,
            "limits": {
                "max_bytes": self.binder_fetch_max_bytes,
                "max_files": self.binder_fetch_max_files,
                "timeout": self.binder_fetch_timeout,
            },
        }

    def fetch_init_container(self, job: dict[str, Any]) -> dict[str, Any]:
        """The init container that fetches ``job`` (see the module)."""
        encoded = base64.b64encode(json.dumps(job, separators=(",", ":")).encode()).decode()
        return {
            "name": FETCH_CONTAINER,
            "image": self.binder_fetch_image,
            "imagePullPolicy": self.binder_fetch_image_pull_policy,
            "command": ["python3", "-m", "egi_hub.binder_service.kube_launch"],
            "env": [
                {"name": JOB_ENV, "value": encoded},
                {"name": "HOME", "value": "/tmp"},
                {"name": "TMPDIR", "value": "/tmp"},
            ],
            "workingDir": "/tmp",
            "resources": dict(self.binder_fetch_resources),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": self.binder_fetch_uid,
                "runAsGroup": self.binder_fetch_uid,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumeMounts": [
                {"name": CONTENT_VOLUME, "mountPath": CONTENT_MOUNT},
                {"name": TMP_VOLUME, "mountPath": "/tmp"},
                {"name": NO_TOKEN_VOLUME, "mountPath": SA_TOKEN_DIR, "readOnly": True},
            ],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }

    def content_volumes(self) -> list[dict[str, Any]]:
        size = str(2 * self.binder_fetch_max_bytes + (64 << 20))
        return [
            {"name": CONTENT_VOLUME, "emptyDir": {"sizeLimit": size}},
            {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": NO_TOKEN_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}},
        ]

    async def start(self) -> Any:
        self._egi_binder_starting = True
        try:
            return await super().start()
        finally:
            self._egi_binder_starting = False

    def is_pod_running(self, pod: Any) -> bool:
        """KubeSpawner's wait for the pod: while a Binder start waits, a failed content
        fetch ends it with the fetch's reason."""
        if self._egi_binder_starting and self._egi_binder is not None:
            reason = content_failure(pod)
            if reason:
                raise web.HTTPError(
                    502, "%s", f"the Binder session's content could not be fetched: {reason}"
                )
        return super().is_pod_running(pod)


# -- the pod side: the init container ----------------------------------------------------


def _fail(reason: str) -> int:
    """Say ``reason`` (one line) in the log and as the container's termination message."""
    print(reason, file=sys.stderr, flush=True)
    if os.path.isfile(TERMINATION_LOG):  # the kubelet's file: never made here
        try:
            with open(TERMINATION_LOG, "w") as f:
                f.write(reason)
        except OSError:
            pass
    return 1


def main() -> int:
    """Fetch the job in ``$EGI_BINDER_FETCH_JOB`` to its destination (the init
    container); 0 when the content is there, also when an earlier run of this
    container fetched it (then the pod restarted its init containers)."""
    import asyncio
    import shutil

    from .fetch import FetchLimits, fetch
    from .providers.base import FetchError, Resolved
    from .specs import BadSpec, parse_launch

    try:
        job = json.loads(base64.b64decode(os.environ.get(JOB_ENV, ""), validate=True))
        dest = Path(job["dest"])
        limits = FetchLimits(**job["limits"])
        fetch_job = job["fetch"]
        resolved = Resolved(
            spec=parse_launch(job["spec"]).spec,
            provider=str(fetch_job["provider"]),
            source=str(fetch_job.get("repo") or fetch_job.get("api") or ""),
            ref=str(job["ref"]),
            label=str(job["label"]),
            fetch=fetch_job,
        )
    except (ValueError, TypeError, KeyError, binascii.Error, BadSpec) as e:
        return _fail(f"the Binder fetch job is not valid ({type(e).__name__})")
    if dest.is_dir():  # renamed into place only when complete
        print(f"{resolved.label} is already fetched", flush=True)
        return 0
    for leftover in [*dest.parent.glob(f".{dest.name}.partial-*"),
                     *dest.parent.glob(f".{dest.name}.scratch-*")]:  # fmt: skip
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        asyncio.run(fetch(resolved, dest, on_line=lambda line: print(line.rstrip(), flush=True),
                          limits=limits))  # fmt: skip
    except FetchError as e:
        return _fail(str(e).splitlines()[0] if str(e) else "the fetch failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
