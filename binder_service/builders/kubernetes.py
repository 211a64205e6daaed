"""The kubernetes build backend: one repo2docker build pod per environment key.

The pod runs ``jupyter-repo2docker --no-run --push --json-logs`` from the repo2docker
image (`KubernetesBuilder.image`, by default the release matching the installed
repo2docker), names the image `KubernetesBuilder.image_prefix` + key, and pushes it to
that registry; the spawner then starts sessions from it. It fetches the source itself
(a git URL at the resolved commit; a Zenodo record by its version's URL; another DOI by
the DOI): the service's fetched copy stays on the service's disk.

The engine: as BinderHub's build pods (``binderhub/build.py``), the pod does not run
one. It mounts the socket of an engine running on the node (`KubernetesBuilder.
docker_socket`, a hostPath of type Socket; by default /var/run/dind/docker.sock, where
BinderHub's docker-in-docker DaemonSet puts it). The Helm chart runs such a DaemonSet
(``binder.dind``, privileged, in the build namespace) and sets this path to its socket,
or to the site's own engine's (``binder.build.dockerSocket``); outside the chart the
site runs the engine. The engine runs the image's build steps (a repository's postBuild,
a Dockerfile's RUN: untrusted code) in *its own* network namespace, not the pod's: what
they may reach is the engine's network policy's business (the chart gives its dind one
that denies private addresses and the metadata server). Because of the hostPath, the
namespace's Pod Security level must be ``privileged``: that namespace is for build
pods only (the chart's ``binder.build.namespace``), never the hub's. The build pod itself
runs unprivileged: no privilege escalation, every capability dropped, the runtime's
default seccomp profile, no service account token (it never talks to the API), no
service links. It runs as root inside its container, as BinderHub's does, because the
socket and /root/.docker (the registry credentials, `KubernetesBuilder.push_secret`,
mounted read-only) are root's.

`KubernetesBuilder.build` creates the pod, follows its log (repo2docker's JSON lines,
parsed as the docker backend does), waits for Succeeded or Failed, and deletes the pod
afterwards: on success, on failure, on timeout and when cancelled (with the pod's uid
as a precondition, so a newer pod of the same name is never deleted). A leftover build
pod of the same key (a service restarted mid-build) is deleted and made again.

**Private repositories** (a user's own token, `BinderService` passes it as ``token``):
the pod clones, so it needs the token, and gets it as follows, and in no other way:

- a Secret of its own (`token_secret_name`: the pod's name + ``-git-token``, the pod's
  labels, type Opaque, the token as its only key), created right after the pod with an
  ``ownerReferences`` entry naming the pod (its uid): Kubernetes' garbage collector
  removes it with the pod, even if this service dies; the build deletes it explicitly
  as soon as it ends (success, failure, timeout, cancellation), before the pod. Until
  the Secret exists the kubelet holds the pod in ContainerCreating (a secret volume
  that is not there yet is retried), so the Secret never exists without an owner;
- mounted read-only (mode 0400) into the ``builder`` container only, at
  `TOKEN_MOUNT`. The container runs as root, which owns the file (no fsGroup is set):
  that is the user git runs as there;
- git reads it through a credential helper set by environment config
  (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``) for the source's
  ``https://<host>`` only, which prints ``username=`` (``x-access-token``, or the
  provider's, e.g. ``oauth2``) and ``password=`` from the file; with
  ``http.followRedirects=false``, a redirect never takes the token elsewhere. Only
  ``https`` sources take a token. The token is never in the pod's arguments, its
  environment's values, its labels or annotations, a log line or a result.

The image then holds that exact commit (the service's key for a private launch
includes it), so its session never fetches content in the pod (which has no token).
It holds the private repository too, so it is pushed to
`KubernetesBuilder.private_image_prefix`, a repository only the site can pull from,
never to `image_prefix` (whoever can pull or list there would get the repository);
without a private prefix, private launches are refused (`private_refusal`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from kubernetes_asyncio.client.rest import ApiException
from packaging.version import Version
from traitlets import Dict, Float, Integer, List, Unicode, default, validate

from ..providers.base import Resolved
from ..user_tokens import BadToken, check_token
from .base import Builder, BuildFailed, BuildResult, LineSplitter
from .docker import Repo2dockerLog, repo2docker_version, valid_optional_prefix

__all__ = [
    "COMPONENT",
    "KEY_LABEL",
    "TOKEN_MOUNT",
    "KubernetesBuilder",
    "pod_name",
    "repo2docker_target",
    "token_secret_name",
]

COMPONENT = "binder-build"
KEY_LABEL = "egi-hub.eu/build-key"
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
         "CreateContainerError"}  # fmt: skip
_ZENODO = {"zenodo.org", "sandbox.zenodo.org"}
#: Where the builder container finds a private build's token (a file named ``token``).
TOKEN_MOUNT = "/etc/egi-binder-git"
TOKEN_VOLUME = "git-token"
TOKEN_MODE = 0o400
_NETLOC = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?")
_USERNAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def pod_name(key: str) -> str:
    """The build pod of ``key``: a DNS-1123 label of at most 63 characters."""
    clean = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    return f"binder-build-{clean}"[:63].rstrip("-")


def token_secret_name(key: str) -> str:
    """The Secret holding the token of ``key``'s build pod (a DNS-1123 subdomain)."""
    return f"{pod_name(key)}-git-token"


def git_credential_config(source: Resolved) -> dict[str, str]:
    """The git config that gives the token in `TOKEN_MOUNT` to ``source``'s https host
    only (see the module); `BuildFailed` for a source that may not take a token."""
    parts = urlsplit(source.source)
    netloc = parts.netloc.lower()
    if source.provider != "git" or parts.scheme != "https":
        raise BuildFailed("a token is only sent to a git repository over https")
    if parts.username or parts.password or not _NETLOC.fullmatch(netloc):
        raise BuildFailed("the repository's address cannot take a token")
    username = str(source.fetch.get("username") or "x-access-token")
    if not _USERNAME.fullmatch(username):
        raise BuildFailed("the repository's token user name is not a plain name")
    # No "$(" anywhere: the kubelet would read it as a reference to a variable.
    helper = (
        f'!f() {{ test "$1" = get || exit 0; echo username={username}; '
        f'printf "password="; cat {TOKEN_MOUNT}/token; echo; }}; f'
    )
    return {f"credential.https://{netloc}.helper": helper, "http.followRedirects": "false"}


def repo2docker_target(source: Resolved) -> list[str]:
    """The end of repo2docker's command line: what to fetch, pinned to ``source``."""
    if source.provider == "git":
        return ["--ref", source.ref, "--", source.source]
    host = (urlsplit(source.source).hostname or "").lower()
    if source.provider == "zenodo" and host in _ZENODO:
        return ["--", f"https://{host}/records/{source.ref}"]
    if source.spec.provider in ("zenodo", "doi"):  # repo2docker resolves the DOI itself
        return ["--", source.spec.repo]
    raise BuildFailed(f"the kubernetes builder cannot fetch {source.provider} content")


def _api_problem(e: Exception) -> str:
    """What the API server said (its Status message), else the error itself."""
    try:
        message = json.loads(e.body).get("message", "")  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        message = ""
    status = getattr(e, "status", "")
    return f"{status} {message or getattr(e, 'reason', '') or e}".strip()


def default_image() -> str:
    """The repo2docker image of the installed release (tags are YYYY.MM.N)."""
    release = Version(repo2docker_version()).release
    year, month, patch = (*release, 0, 0)[:3]
    return f"quay.io/jupyterhub/repo2docker:{year}.{month:02d}.{patch}"


class KubernetesBuilder(Builder):
    """A repo2docker build pod per environment key (see the module docstring)."""

    name = "kubernetes"

    namespace = Unicode(
        help="""Namespace of the build pods (default: the service's own). Build pods mount
        the engine's socket (Pod Security ``privileged``) and run untrusted code: give
        them a namespace of their own, without the hub's Secrets (the Helm chart sets it
        from binder.build.namespace)."""
    ).tag(config=True)

    @default("namespace")
    def _default_namespace(self) -> str:
        with contextlib.suppress(OSError):
            return Path(SA_NAMESPACE).read_text().strip()
        return "default"

    image = Unicode(help="The repo2docker image the build pods run.").tag(config=True)

    @default("image")
    def _default_image(self) -> str:
        return default_image()

    image_prefix = Unicode(
        "",
        help="""Image names are this + the environment key, in a registry the cluster
        pulls from: 'registry.example.org/binder/env:'. Empty: the backend is
        unavailable.""",
    ).tag(config=True)

    @validate("image_prefix")
    def _valid_prefix(self, proposal: dict) -> str:
        return valid_optional_prefix(proposal)

    private_image_prefix = Unicode(
        "",
        help="""Where images of private launches (a user's own token) go: this + the
        environment key, in a repository only the site can pull from (never the public
        image_prefix: an image holds its repository, and whoever may pull or list it
        there gets a private repository). push_secret must be able to push there, and the
        session pods to pull from it. Empty: private launches are refused, since build
        pods always push.""",
    ).tag(config=True)

    @validate("private_image_prefix")
    def _valid_private_prefix(self, proposal: dict) -> str:
        return valid_optional_prefix(proposal)

    push_secret = Unicode(
        "",
        help="""Secret with the registry credentials (a docker config.json), mounted
        read-only at /root/.docker in the build pod. Empty: push without credentials.""",
    ).tag(config=True)

    push_secret_key = Unicode(
        ".dockerconfigjson",
        help="""The push_secret's key holding the docker config.json: by default the key
        of a kubernetes.io/dockerconfigjson Secret, as `kubectl create secret
        docker-registry` makes it (the same Secret may then be a pull secret too);
        'config.json' for a generic Secret made with --from-file=config.json=...""",
    ).tag(config=True)

    docker_socket = Unicode(
        "/var/run/dind/docker.sock",
        help="""Path, on the node, of the container engine's socket the build pod uses.
        The engine runs the images' build steps (a repository's postBuild, a Dockerfile's
        RUN: untrusted code) in its own network namespace, not the build pod's: confine
        the engine's network. The Helm chart sets it (binder.dind, whose NetworkPolicy
        does that, or binder.build.dockerSocket).""",
    ).tag(config=True)

    node_selector = Dict(help="Node selector of the build pods.").tag(config=True)
    tolerations = List(Dict(), help="Tolerations of the build pods.").tag(config=True)
    image_pull_secrets = List(Unicode(), help="Secrets to pull the repo2docker image.").tag(
        config=True
    )
    service_account = Unicode(
        "", help="Service account of the build pods (its token is never mounted)."
    ).tag(config=True)

    resources = Dict(
        {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        help="""Resources of the repo2docker process (cloning, talking to the engine);
        the image build itself runs in the node's engine.""",
    ).tag(config=True)

    user_id = Integer(1000, help="The uid of the user in the images (as mybinder: 1000).").tag(
        config=True
    )
    user_name = Unicode("jovyan", help="The user name in the images.").tag(config=True)
    extra_args = List(Unicode(), help="Extra arguments to repo2docker.").tag(config=True)
    poll_interval = Float(1.0, help="Seconds between reads of the build pod's status.").tag(
        config=True
    )

    def image_name(self, key: str, *, private: bool = False) -> str:
        """``key``'s image: under `private_image_prefix` for a ``private`` launch."""
        if private:
            if not self.private_image_prefix:  # never the public registry
                raise BuildFailed(self.private_refusal() or "no private image prefix")
            return f"{self.private_image_prefix}{key}"
        return f"{self.image_prefix}{key}"

    def private_refusal(self) -> str | None:
        """Why private launches are refused (no `private_image_prefix`), or None."""
        if self.private_image_prefix:
            return None
        return (
            "this site does not launch private repositories: its build pods push every "
            "image to a registry others may pull from (KubernetesBuilder.private_image_prefix "
            "is not set)"
        )

    def key_extra(self) -> str:
        parts = [self.name, self.image, self.image_prefix, str(self.user_id), self.user_name]
        return "\0".join(parts + self.extra_args)

    def unavailable(self) -> str | None:
        if not self.image_prefix:
            return "no registry for the images (KubernetesBuilder.image_prefix) is set"
        config = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
        if not os.environ.get("KUBERNETES_SERVICE_HOST") and not os.path.exists(config):
            return "no Kubernetes API: not in a cluster and no kubeconfig"
        return None

    def command(self, key: str, source: Resolved, *, private: bool = False) -> list[str]:
        cmd = ["jupyter-repo2docker", "--no-run", "--push", "--json-logs"]
        cmd += ["--image-name", self.image_name(key, private=private)]
        cmd += ["--user-id", str(self.user_id), "--user-name", self.user_name]
        cmd += ["--label", f"eu.egi-hub.binder.key={key}", *self.extra_args]
        return cmd + repo2docker_target(source)

    def labels(self, key: str) -> dict[str, str]:
        """The labels of ``key``'s build pod (and of its token's Secret)."""
        return {
            "app.kubernetes.io/name": "egi-hub",
            "app.kubernetes.io/component": COMPONENT,
            "app.kubernetes.io/managed-by": "egi-hub",
            KEY_LABEL: key[:63],
        }

    def pod_manifest(self, key: str, source: Resolved, *, private: bool = False) -> dict[str, Any]:
        """The build pod of ``key`` for ``source`` (JSON-safe, as the API takes it);
        ``private``: it clones with the token in `token_secret_name` (never in here)."""
        mounts = [{"name": "docker-socket", "mountPath": "/var/run/docker.sock"}]
        volumes: list[dict[str, Any]] = [
            {"name": "docker-socket", "hostPath": {"path": self.docker_socket, "type": "Socket"}}
        ]
        if self.push_secret:
            mounts.append({"name": "docker-config", "mountPath": "/root/.docker", "readOnly": True})
            items = [{"key": self.push_secret_key, "path": "config.json"}]
            volumes.append(
                {
                    "name": "docker-config",
                    "secret": {"secretName": self.push_secret, "items": items},
                }
            )
        env = [{"name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock"}]
        if private:
            config = git_credential_config(source)
            env.append({"name": "GIT_CONFIG_COUNT", "value": str(len(config))})
            for i, (name, value) in enumerate(config.items()):
                env.append({"name": f"GIT_CONFIG_KEY_{i}", "value": name})
                env.append({"name": f"GIT_CONFIG_VALUE_{i}", "value": value})
            mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT, "readOnly": True})
            secret = {"secretName": token_secret_name(key), "defaultMode": TOKEN_MODE}
            volumes.append({"name": TOKEN_VOLUME, "secret": secret})
        container = {
            "name": "builder",
            "image": self.image,
            "args": self.command(key, source, private=private),
            "env": env,
            "resources": self.resources,
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumeMounts": mounts,
        }
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": max(1, int(self.timeout)),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 10,
            "containers": [container],
            "volumes": volumes,
        }
        if self.service_account:
            spec["serviceAccountName"] = self.service_account
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            spec["tolerations"] = list(self.tolerations)
        if self.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": s} for s in self.image_pull_secrets]
        annotations = {"egi-hub.eu/source": source.source[:2048], "egi-hub.eu/ref": source.ref}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name(key),
                "labels": self.labels(key),
                "annotations": annotations,
            },
            "spec": spec,
        }

    def secret_manifest(self, key: str, token: str, pod_uid: str) -> dict[str, Any]:
        """The Secret holding ``token`` for ``key``'s build pod, owned by that pod (its
        uid ``pod_uid``): removed with it by Kubernetes' garbage collector."""
        owner = {"apiVersion": "v1", "kind": "Pod", "name": pod_name(key), "uid": pod_uid}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": token_secret_name(key),
                "labels": self.labels(key),
                "ownerReferences": [owner],
            },
            "type": "Opaque",
            "data": {"token": base64.b64encode(token.encode()).decode()},
        }

    async def _api(self) -> Any:
        from kubespawner.clients import load_config, shared_client

        await asyncio.to_thread(load_config)
        return shared_client("CoreV1Api")

    async def build(
        self, key: str, content: Path, source: Resolved, log: Callable[[str], None],
        *, token: str | None = None,
    ) -> BuildResult:  # fmt: skip
        if token is not None:
            try:
                check_token(token)
            except BadToken as e:
                raise BuildFailed(f"the access token cannot be used: {e}") from None
        manifest = self.pod_manifest(key, source, private=token is not None)
        name = manifest["metadata"]["name"]
        api = await self._api()
        parsed = Repo2dockerLog()
        uid = secret_uid = ""
        try:
            async with asyncio.timeout(self.timeout):
                if token is not None:
                    await self._remove_leftover_secret(api, token_secret_name(key))
                uid = await self._create(api, manifest)
                log(f"build pod {name} created in namespace {self.namespace}")
                if token is not None:
                    secret_uid = await self._create_secret(
                        api, self.secret_manifest(key, token, uid)
                    )
                    log("your token is in a Secret of its own, deleted after the build")
                await self._wait(api, name, ("Running", "Succeeded", "Failed"), log)
                await self._follow(api, name, parsed, log)
                pod = await self._wait(api, name, ("Succeeded", "Failed"), log)
        except TimeoutError:
            raise BuildFailed(f"the build took longer than {self.timeout:g} s") from None
        except (ApiException, aiohttp.ClientError) as e:
            raise BuildFailed(f"the Kubernetes API failed: {_api_problem(e)}") from None
        finally:
            if secret_uid:  # the token first, then the pod
                await asyncio.shield(self._delete_secret(api, token_secret_name(key), secret_uid))
            if uid:
                await asyncio.shield(self._delete(api, name, uid))
        if pod.status.phase != "Succeeded":
            raise BuildFailed(f"repo2docker failed: {self._reason(pod, parsed)}")
        image = self.image_name(key, private=token is not None)
        summary = [f"image: {image}", f"digest: {parsed.digest}", f"repo2docker image {self.image}"]
        if parsed.buildpack:
            summary.append(f"buildpack: {parsed.buildpack}")
        environment = {"image": image, "digest": parsed.digest}
        return BuildResult(key, self.name, environment, "\n".join(summary) + "\n")

    async def _create(self, api: Any, manifest: dict) -> str:
        """Create the pod (replacing a leftover build pod of the name); its uid."""
        name = manifest["metadata"]["name"]
        for attempt in range(2):
            try:
                pod = await api.create_namespaced_pod(self.namespace, manifest)
                return pod.metadata.uid
            except ApiException as e:
                if e.status != 409 or attempt:
                    problem = _api_problem(e)
                    raise BuildFailed(f"the build pod could not be created: {problem}") from None
            old = await api.read_namespaced_pod(name, self.namespace)
            labels = old.metadata.labels or {}
            if labels.get("app.kubernetes.io/component") != COMPONENT:
                raise BuildFailed(f"a pod named {name} exists and is not a build pod")
            await self._delete(api, name, old.metadata.uid)
            while True:  # until it is gone
                if await self._read(api, name) is None:
                    break
                await asyncio.sleep(self.poll_interval)
        raise AssertionError("unreachable")

    async def _create_secret(self, api: Any, manifest: dict) -> str:
        """Create the token's Secret; its uid."""
        try:
            secret = await api.create_namespaced_secret(self.namespace, manifest)
        except ApiException as e:
            problem = _api_problem(e)
            raise BuildFailed(f"the build's Secret could not be created: {problem}") from None
        return secret.metadata.uid

    async def _remove_leftover_secret(self, api: Any, name: str) -> None:
        """Delete a token Secret of an earlier build pod of the key (a service restarted
        mid-build, the garbage collector not done yet), before the new pod could mount
        it; `BuildFailed` if a Secret of that name is not a build pod's."""
        try:
            old = await api.read_namespaced_secret(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        labels = old.metadata.labels or {}
        if labels.get("app.kubernetes.io/component") != COMPONENT:
            raise BuildFailed(f"a Secret named {name} exists and is not a build pod's")
        await self._delete_secret(api, name, old.metadata.uid)

    async def _delete_secret(self, api: Any, name: str, uid: str) -> None:
        body = {"preconditions": {"uid": uid}}
        try:
            await api.delete_namespaced_secret(name, self.namespace, body=body)
        except ApiException as e:
            if e.status not in (404, 409):
                self.log.warning("Secret %s not deleted: %s %s", name, e.status, e.reason)

    async def _read(self, api: Any, name: str) -> Any:
        try:
            return await api.read_namespaced_pod(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def _wait(self, api: Any, name: str, phases: tuple[str, ...], log: Callable) -> Any:
        """The pod once its phase is one of ``phases``; `BuildFailed` if it is gone or
        cannot start (image pull errors...)."""
        said = ""
        while True:
            pod = await self._read(api, name)
            if pod is None:
                raise BuildFailed("the build pod was deleted")
            status = pod.status
            if status and status.phase in phases:
                return pod
            for container in (status.container_statuses if status else None) or []:
                waiting = container.state and container.state.waiting
                if waiting and waiting.reason in STUCK:
                    raise BuildFailed(
                        f"the build pod cannot start: {waiting.reason}: {waiting.message or ''}"
                    )
            for condition in (status.conditions if status else None) or []:
                if condition.reason == "Unschedulable" and condition.message != said:
                    said = condition.message
                    log(f"waiting for a node: {said}")
            await asyncio.sleep(self.poll_interval)

    async def _follow(self, api: Any, name: str, parsed: Repo2dockerLog, log: Callable) -> None:
        """Pass the builder's log to ``log`` until it ends (the container exits)."""
        splitter = LineSplitter()

        def emit(lines: list[str]) -> None:
            for line in lines:
                for text in parsed.feed(line):
                    log(text)

        try:
            response = await api.read_namespaced_pod_log(
                name, self.namespace, container="builder", follow=True, _preload_content=False
            )
            try:
                async for chunk in response.content.iter_any():
                    emit(splitter.feed(chunk))
            finally:
                response.release()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a dropped stream: the pod's phase still tells the end
            self.log.warning("Build pod %s: log stream ended: %s", name, e)
        emit(splitter.flush())

    @staticmethod
    def _reason(pod: Any, parsed: Repo2dockerLog) -> str:
        if parsed.failures or parsed.lines:
            return parsed.reason()
        for container in pod.status.container_statuses or []:
            ended = container.state and container.state.terminated
            if ended and (ended.reason or ended.message):
                return f"{ended.reason or ''} {ended.message or ''}".strip()
        return pod.status.message or pod.status.reason or "the build pod failed"

    async def _delete(self, api: Any, name: str, uid: str) -> None:
        body = {"preconditions": {"uid": uid}, "gracePeriodSeconds": 0}
        try:
            await api.delete_namespaced_pod(name, self.namespace, body=body)
        except ApiException as e:
            if e.status not in (404, 409):
                self.log.warning("Build pod %s not deleted: %s %s", name, e.status, e.reason)

    async def remove(self, key: str) -> None:
        """Images stay in the registry (its own retention policy removes them)."""
