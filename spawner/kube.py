"""`EGIKubeSpawner`: KubeSpawner with VO profiles and quota admission (entry point egi-kube).

The same `VOSpawnerMixin` as the local spawner, with KubeSpawner doing the profile work
on the list the user's VOs allow (never the whole ``profile_list``): the form is the
mixin's profile cards (KubeSpawner's field names, so either side reads it), and
KubeSpawner's own steps validate the choice and apply the overrides, as it does for a
callable ``profile_list``. Only then does the `QuotaPolicy` admit the pod, with the
requests and limits read back from the spawner; KubeSpawner's second
`load_user_options` call in its start keeps what was charged. The spawn progress is
the admission event, then KubeSpawner's own (the pod's events).

Pods carry ``egi.eu/vo`` and ``egi.eu/profile`` labels; KubeSpawner's ``safe`` name
scheme keeps pod names valid for any username. A pod the Kubernetes API refuses because
a ResourceQuota is exceeded gives the same kind of clear refusal as the hub's own quota,
naming the namespace whose quota it is.

With ``vo_namespaces`` (the chart's ``singleuser.voNamespaces``), a server charged to a
VO its user belongs to starts in that VO's namespace, chosen once admitted
(`egi_hub.spawner.kube_namespaces`): its pod, home PVC, Services and storage Secret
all live there (KubeSpawner keeps the namespace in the server's state, so a restarted
hub finds them); any other server, in the hub's namespace.

A Binder session (a named server of the Binder service's ticket) runs without the
home volume when it would hide the repository the image holds at ``binder_repo_dir``
(the chart's ``singleuser.storage`` mounts it there): no claim is made for a session.

The notebook container is locked down unless the site says otherwise
(`container_security_context`): not root, no privilege escalation, no capabilities,
the runtime's default seccomp profile, as Pod Security's ``restricted`` level asks.
Only a DataHub mount's oneclient sidecar (egi_hub.storage_mounts.kube) is privileged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado import web
from traitlets import default

from egi_hub.binder_service.kube_launch import BINDER_SETTINGS, KubeBinderMixin
from egi_hub.names import label_value
from egi_hub.storage_mounts.kube import (
    CREDENTIALS_DIR,
    OWNER_LABELS,
    KubeMounts,
    KubeStorage,
    delete_storage_secret,
    storage_for_pod,
)
from egi_hub.storage_mounts.kube_renewal import SidecarTokenRenewal
from egi_hub.storage_mounts.spawner import StorageSpawnerMixin

from .kube_namespaces import VONamespacesTrait, namespace_for
from .profiles import Profile
from .quota import Charge
from .refusals import cluster_policy_refusal, home_quota_refusal, resource_quota_refusal
from .vo_spawning import VOSpawnerMixin

__all__ = [
    "NOTEBOOK_SECURITY_CONTEXT",
    "EGIKubeSpawner",
]

#: The notebook container's securityContext unless the site sets its own.
NOTEBOOK_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


class EGIKubeSpawner(KubeBinderMixin, StorageSpawnerMixin, VOSpawnerMixin, KubeSpawner):
    """KubeSpawner whose profiles follow VO rules and whose pods pass the quota policy."""

    # admit() sets these labels; put them back before each start, with the profile's.
    profile_reset_extra = ("extra_labels",)

    vo_namespaces = VONamespacesTrait(
        help="""
        The namespace of each VO's servers: ``{vo: namespace}``. A server charged to a
        VO listed here starts in its namespace when the user is a member of the VO;
        every other server in the hub's (``namespace``). The hub needs the same rights
        in each (the chart's ``singleuser.voNamespaces`` makes the namespaces, their
        ResourceQuota and the hub's Role there, and sets this). Empty: one namespace.
        """,
    ).tag(config=True)

    @default("container_security_context")
    def _default_container_security_context(self) -> dict[str, Any]:
        # Container-level, not the pod's: a pod-level runAsNonRoot would also bind the
        # oneclient sidecar, which runs as root (its FUSE mount needs it).
        return copy.deepcopy(NOTEBOOK_SECURITY_CONTEXT)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The hub's namespace (the configured one), before any server's own is chosen
        # or loaded from the state.
        self._egi_home_namespace: str = self.namespace

    # A Binder start also changes storage_pvc_ensure (put back before any later start).
    binder_settings = (*BINDER_SETTINGS, "storage_pvc_ensure")

    async def apply_binder(self, launch: dict[str, Any]) -> None:
        """KubeBinderMixin's, then no home volume over the session's repository."""
        await super().apply_binder(launch)
        self._egi_binder_without_home()

    def _egi_binder_without_home(self) -> None:
        """A Binder session's files are its repository's, in the image at
        `binder_repo_dir` (the image user's home): a home volume (the chart's
        ``singleuser.storage``) mounted there or above would hide them, and a session
        needs no claim of its own (z2jh's BinderHub runs with ``type: none`` too)."""
        repo = self.binder_repo_dir.rstrip("/") + "/"

        def hides(mount: Any) -> bool:
            if not isinstance(mount, dict):
                return False
            return repo.startswith(str(mount.get("mountPath") or "").rstrip("/") + "/")

        hidden = [m for m in _values(self.volume_mounts) if hides(m)]
        if not hidden:
            return
        kept_mounts = _kept(self.volume_mounts, lambda m: not hides(m))
        used = {m.get("name") for m in _values(kept_mounts) if isinstance(m, dict)}
        gone = {m.get("name") for m in hidden} - used
        self.volumes = _kept(self.volumes, lambda v: v.get("name") not in gone)
        self.volume_mounts = kept_mounts
        claims = [
            (v.get("persistentVolumeClaim") or {}).get("claimName") for v in _values(self.volumes)
        ]
        if "{pvc_name}" not in claims:
            self.storage_pvc_ensure = False
        self.log.info("%s: Binder session without the home volume", self._log_name)

    async def apply_profile(self, profile: Profile, allowed: Sequence[Profile]) -> None:
        # KubeSpawner's load_user_options steps, on the list this user may choose from
        # (what it does with a callable profile_list), for the profile chosen from it.
        profiles = self._get_initialized_profile_list(list(allowed))
        try:
            self._validate_user_options(profiles)
        except ValueError as e:
            raise web.HTTPError(400, "%s", str(e)) from None
        self._load_profile(profile.slug, profiles)

    async def admit(self) -> Charge:
        charge = await super().admit()
        if self.vo_namespaces:
            context = await self.user_context()
            self.use_namespace(
                namespace_for(self.vo_namespaces, charge.vo, context.vos, self._egi_home_namespace)
            )
        self.progress_end()  # ours end here; KubeSpawner's (the pod's) follow
        return charge

    def use_namespace(self, namespace: str) -> None:
        """Start this server in ``namespace``: its pod, and the names made from it."""
        if namespace != self.namespace:
            self.log.info("%s: starting in namespace %s", self._log_name, namespace)
            self.namespace = namespace
            # A home PVC seen in another namespace is not one here: make it if missing.
            self._pvc_exists = False
        self.dns_name = self.dns_name_template.format(namespace=namespace, name=self.pod_name)

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """The admission event, then KubeSpawner's events about the pod."""
        async for event in self.follow_progress():
            yield event
        async for event in KubeSpawner.progress(self):
            yield event

    async def load_user_options(self) -> None:
        """KubeSpawner's hook, called again by its start: keep the profile that admission
        applied and charged. Outside a start, choose and apply it as a start would."""
        if not self._egi_profile_loaded:
            await self.load_profile()

    def label_charge(self, charge: Charge) -> None:
        labels = {"egi.eu/vo": label_value(charge.vo or "none")}
        if charge.profile:
            labels["egi.eu/profile"] = label_value(charge.profile)
        self.extra_labels = {**self.extra_labels, **labels}

    # Storage (issue 9): the mounts' volumes and sidecars, and their Secret. The
    # rendering is egi_hub.storage_mounts.kube; these hooks only apply it.
    _egi_storage: KubeStorage | None = None
    # The keeper's credential files on the pod's memory-backed volume, not the home PVC.
    egi_credentials_dir = CREDENTIALS_DIR

    async def get_pod_manifest(self) -> Any:
        """KubeSpawner's pod plus this server's mounts (NFS volumes, oneclient sidecars)."""
        pod = await super().get_pod_manifest()
        self._egi_storage = await storage_for_pod(self, pod)
        return pod

    async def _make_create_pvc_request(self, pvc: Any, request_timeout: int) -> bool:
        """KubeSpawner's, with a home claim the namespace's ResourceQuota refuses
        (``requests.storage``, ``persistentvolumeclaims``) as one clear refusal."""
        try:
            return await super()._make_create_pvc_request(pvc, request_timeout)
        except ApiException as e:
            body = str(e.body or "")
            if e.status == 403 and ("exceeded quota" in body or "failed quota" in body):
                raise home_quota_refusal(self.namespace, _status_message(body)) from None
            raise

    async def _make_create_pod_request(self, pod: Any, request_timeout: int) -> bool:
        if self._egi_storage is not None:  # the sidecars' Secret before the pod
            await self._egi_storage.create_secrets(self.api, request_timeout)
        try:
            created = await super()._make_create_pod_request(pod, request_timeout)
            if created and self._egi_storage is not None:
                await self._egi_storage.own_secrets(self.api, pod, request_timeout)
            return created
        except ApiException as e:
            body = str(e.body or "")
            if e.status == 403 and "exceeded quota" in body:
                detail = _status_message(body)
                links = self.refusal_links()
                raise resource_quota_refusal(self.namespace, detail, links) from None
            if e.status == 403 and any(words in body for words in CLUSTER_POLICY_WORDS):
                raise cluster_policy_refusal(self.namespace, _status_message(body)) from None
            raise

    # The renewal of the DataHub sidecars' tokens (egi_hub.storage_mounts.kube_renewal):
    # started once the server is up, or found running by a restarted hub (JupyterHub
    # calls load_state, then poll); cancelled first thing in stop.
    _egi_renewal: SidecarTokenRenewal | None = None

    async def start(self) -> Any:
        url = await super().start()
        self._egi_renew_tokens()
        return url

    async def poll(self) -> int | None:
        status = await super().poll()
        if status is None:
            self._egi_renew_tokens()
        elif self._egi_renewal is not None:  # the server is gone: so is its renewal
            renewal, self._egi_renewal = self._egi_renewal, None
            await renewal.stop()
        return status

    def _egi_renew_tokens(self) -> None:
        """Start this server's token renewal if it has DataHub sidecars (never raises)."""
        try:
            if self._egi_renewal is not None and self._egi_renewal.running:
                return
            if not KubeMounts(parent=self).renew_tokens or not self._egi_has_sidecars():
                return
            self._egi_renewal = SidecarTokenRenewal(self)
            self._egi_renewal.start()
        except Exception as e:  # a renewal never stops a server from running
            self.log.error("DataHub token renewal not started (%s)", type(e).__name__)

    def _egi_has_sidecars(self) -> bool:
        if self._egi_storage is not None:  # started by this hub
            return bool(self._egi_storage.secrets)
        from egi_hub.storage_mounts.datahub import DatahubMount

        names = set(self._egi_mount_names or ())
        return any(isinstance(m, DatahubMount) and m.name in names for m in self.storage.mounts)

    async def stop(self, now: bool = False) -> None:
        if self._egi_renewal is not None:  # no patch of the Secret from here on
            renewal, self._egi_renewal = self._egi_renewal, None
            await renewal.stop()
        try:
            await super().stop(now=now)
        finally:
            # Only when this server made one: by this hub (a Secret in _egi_storage), or,
            # for a hub restarted since the start, a server with DataHub sidecars. Even
            # then only the server's own (labels checked, uid precondition).
            if self._egi_has_sidecars():
                await delete_storage_secret(
                    self.api,
                    self.namespace,
                    self.pod_name,
                    self._egi_owner_labels(),
                    self.k8s_api_request_timeout,
                )
            self._egi_storage = None

    def _egi_owner_labels(self) -> dict[str, str]:
        """The user and server labels KubeSpawner gives this server's pod (and so its
        storage Secret): what says a Secret of the pod's name is this server's."""
        labels = self._build_pod_labels({})
        return {k: labels[k] for k in OWNER_LABELS if k in labels}


#: What the API server says when a namespace's own rules refuse a pod as configured: a
#: ResourceQuota that needs limits the pod lacks ("failed quota: ... must specify
#: limits.cpu"), a Pod Security level the pod breaks ("violates PodSecurity").
CLUSTER_POLICY_WORDS = ("failed quota", "violates PodSecurity")


def _values(items: Any) -> list[Any]:
    """A KubeSpawner list-or-dict setting's items (a dict's values)."""
    return list(items.values()) if isinstance(items, dict) else list(items or [])


def _kept(items: Any, keep: Callable[[Any], bool]) -> Any:
    """A KubeSpawner list-or-dict setting with only the items ``keep`` keeps (same kind)."""
    if isinstance(items, dict):
        return {k: v for k, v in items.items() if keep(v)}
    return [v for v in items or [] if keep(v)]


def _status_message(body: str) -> str:
    """The ``message`` of a Kubernetes Status body (or the body itself)."""
    try:
        return str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        return body
