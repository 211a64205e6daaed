"""A Kubernetes API for KubeSpawner tests: kmock's emulator (a stand-in: no real cluster
runs here) plus what a real API server and kubelet would add.

Shims, as design §6 lists them: booleans sent lower-case in query strings
(``watch=true``), the resource kinds declared before the first list, a fake kubelet
that marks each new pod Running with a ready container; on create, what the API
server fills in (namespace, uid, resourceVersion, a Pending status); and uid
preconditions: a delete whose ``preconditions.uid``, or a patch whose
``metadata.uid``, is not the object's uid is refused with 409 Conflict, as the API
server does ("Precondition failed: UID in precondition"), never applied.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import yaml
from kmock import KubernetesEmulator, ResourceInfo, Server, action
from kmock._internal.k8s import KubernetesObjectConflictError
from kubernetes_asyncio.client import api_client
from kubernetes_asyncio.config import kube_config

_parameters_to_tuples = api_client.ApiClient.parameters_to_tuples


def _lower_case_booleans(self, params, collection_formats):
    pairs = _parameters_to_tuples(self, params, collection_formats)
    return [(k, "true" if v is True else "false" if v is False else v) for k, v in pairs]


class ApiServer(KubernetesEmulator):
    """kmock's emulator, filling in metadata (and a pod status) as an API server does."""

    _versions = itertools.count(1)

    async def _handle(self, request):
        if request.resource is not None and request.name is not None:
            self._check_uid(request)
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == action.CREATE:
                meta.setdefault("namespace", request.namespace)
                meta.setdefault("uid", str(uuid.uuid4()))
                now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                meta.setdefault("creationTimestamp", now)
                if request.resource.plural == "pods":
                    request.data.setdefault("status", {"phase": "Pending"})
            if request.action in (action.CREATE, action.UPDATE):
                meta["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)

    def _check_uid(self, request) -> None:
        """Refuse a delete or patch whose uid precondition names another object."""
        data = request.data if isinstance(request.data, dict) else {}
        if request.action == action.DELETE:
            wanted = (data.get("preconditions") or {}).get("uid")
        elif request.action == action.UPDATE:
            wanted = (data.get("metadata") or {}).get("uid")
        else:
            return
        key = (request.resource, request.namespace, request.name)
        if not wanted or key not in self.objects or self.objects[key].deleted:
            return
        found = self.objects[key]
        uid = (found.get("metadata") or {}).get("uid")
        if uid != wanted:
            raise KubernetesObjectConflictError(
                reason="Conflict",
                message=f"Precondition failed: UID in precondition: {wanted}, "
                f"UID in object meta: {uid}",
            )


async def _kubelet(base: str, namespace: str) -> None:
    """Mark every new pod Running, with an IP and a ready container.

    New by uid, not by name: a server stopped and started again gets a pod of the same
    name, which must start too.
    """
    seen: set[str] = set()
    running = {
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "containerStatuses": [
                {
                    "name": "notebook",
                    "ready": True,
                    "state": {"running": {}},
                    "image": "quay.io/jupyterhub/singleuser:5",
                    "imageID": "",
                    "restartCount": 0,
                }
            ],
        }
    }
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{base}/api/v1/namespaces/{namespace}/pods") as r:
                pods = (await r.json()).get("items", [])
            for pod in pods:
                name, uid = pod["metadata"]["name"], pod["metadata"].get("uid", "")
                if uid not in seen:
                    seen.add(uid)
                    url = f"{base}/api/v1/namespaces/{namespace}/pods/{name}"
                    headers = {"Content-Type": "application/merge-patch+json"}
                    async with session.patch(url, json=running, headers=headers):
                        pass
            await asyncio.sleep(0.05)


def write_kubeconfig(path: Path, server: str, namespace: str | None = None) -> Path:
    """A kubeconfig at ``path`` whose one context is the API at ``server`` (a stand-in),
    with a token that means nothing."""
    context: dict[str, str] = {"cluster": "standin", "user": "test"}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": server}}],
        "contexts": [{"name": "standin", "context": context}],
        "users": [{"name": "test", "user": {"token": "not-a-secret"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def kubernetes(tmp: Path, namespace: str = "default") -> AsyncIterator[ApiServer]:
    """A running emulated API server with a kubelet; KubeSpawner's kubeconfig points to it."""
    from kubespawner import KubeSpawner, clients

    api_client.ApiClient.parameters_to_tuples = _lower_case_booleans
    saved_location = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    async with ApiServer() as api, Server(api) as server:
        for plural, kind in [
            ("pods", "Pod"),
            ("events", "Event"),
            ("persistentvolumeclaims", "PersistentVolumeClaim"),
        ]:
            api.resources[f"v1/{plural}"] = ResourceInfo(
                namespaced=True,
                kind=kind,
                verbs={"list", "watch", "get", "create", "delete", "patch"},
            )
        base = str(server.url).rstrip("/")
        config = write_kubeconfig(tmp / "kubeconfig", base)
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(config)
        # The client configuration is process-wide too: point it at this server now.
        await kube_config.load_kube_config(config_file=str(config))
        # KubeSpawner shares API clients and reflectors process-wide: none from a
        # previous test's API server may be reused.
        clients._client_cache.clear()
        KubeSpawner.reflectors = {}
        kubelet = asyncio.create_task(_kubelet(base, namespace))
        try:
            yield api
        finally:
            kubelet.cancel()
            for reflector in list(KubeSpawner.reflectors.values()):
                await reflector.stop()
            KubeSpawner.reflectors = {}
            clients._client_cache.clear()
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved_location
            api_client.ApiClient.parameters_to_tuples = _parameters_to_tuples
