"""A server's mounts as Kubernetes objects: what `EGIKubeSpawner` adds to the pod.

One kind at a time, each rendered where it is safest:

- **NFS**: a native ``nfs`` volume. The kubelet mounts the export on the node; the pod
  needs no privileges and holds no credentials. ``readOnly`` on the volume *and* the
  notebook's volumeMount when the mount is read-only.
- **DataHub**: a oneclient sidecar per mount (Onedata's FUSE client, run as Onedata
  documents for its ``onedata/oneclient`` image: privileged, token in
  ``ONECLIENT_ACCESS_TOKEN``, Oneprovider in ``ONECLIENT_PROVIDER_HOST``). It mounts
  the spaces on an ``emptyDir`` shared with the notebook container: ``Bidirectional``
  propagation in the sidecar (so its FUSE mount leaves the container),
  ``HostToContainer`` in the notebook (so the notebook sees it, and can never push a
  mount back). Kubernetes allows ``Bidirectional`` only in privileged containers, so
  the sidecar is privileged; the notebook container never is.
  The token is a ``oneclient``-interface Onedata token (useless against the REST file
  API) and reaches the sidecar only: it lives in a per-server Secret mounted as a file
  into that sidecar alone, never in an environment variable of the notebook
  container, never in the pod spec. The sidecar's script reads the file into
  oneclient's environment and remounts when the kubelet delivers a renewed token.
- **S3**: nothing in the pod. Buckets are reached in the notebook through fsspec
  (``s3fs``) with the credential document the notebook-side keeper fetches from the
  hub API: no FUSE, no privileges, keys renewable without a restart, and the same code
  path as on the local stack. An s3fs-fuse sidecar would need a privileged container
  and a key in the pod for every bucket, for a POSIX view that object storage only
  imitates.

The keeper's credential files (S3 keys, DataHub REST tokens: ``$EGI_STORAGE_DIR``) are
kept on a memory-backed ``emptyDir`` (`CREDENTIALS_DIR`) in the notebook container,
never on the home volume, which backups and NFS-backed homes copy: they end with the
pod.

Per-server Secrets (``<pod>.egi-storage``: a dot no pod name holds, so neither another
server's pod nor KubeSpawner's internal_ssl Secret, named after its pod, can take it)
are created just before the pod and deleted when the server stops, but only a Secret
that is this server's own: the name is not proof, as an admin's or another hub's
Secret in a shared namespace can make the same one. The hub reads the Secret first
and replaces (a retried start), deletes, or patches it (the token renewal) only if it
carries the ``app.kubernetes.io/component: egi-storage`` label and this server's
``hub.jupyter.org/username`` and ``servername`` labels, with the uid it read as a
precondition (a Secret made again meanwhile is left alone);
once the pod exists they also get an owner reference to it, so Kubernetes' garbage
collector removes them if the hub never gets to run its stop (a crash, a deleted
namespace object). Explicit delete keeps the usual case immediate; the owner
reference covers the rest.

A DataHub mount without credentials (Onezone down, token refused) or whose spaces no
online Oneprovider supports gets no sidecar: ``errors`` says why, for the mount's
error entry in the mounts document, and the server starts anyway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from traitlets import Bool, Dict, Float, Integer, Unicode
from traitlets.config import Configurable

from egi_hub.spaces import AmbiguousSpaceName, match_spaces

from .datahub import DatahubMount
from .datahub_tokens import DatahubCredentials, DatahubScope, DatahubSpace, DatahubUse
from .mounts import ResolvedMount
from .nfs import NFSMount
from .s3 import S3Mount

log = logging.getLogger(__name__)

__all__ = [
    "ONECLIENT_MOUNT_DIR",
    "ONECLIENT_SCRIPT",
    "SECRET_SUFFIX",
    "TOKEN_DIR",
    "TOKEN_EXPIRY_ANNOTATION",
    "KubeMounts",
    "KubeStorage",
    "check_pod_name",
    "datahub_cache_key",
    "secret_key_for",
    "secret_name_for",
]

#: Where the sidecar mounts the spaces (the ``onedata/oneclient`` image's default).
ONECLIENT_MOUNT_DIR = "/mnt/oneclient"
#: Where the sidecar (only) finds its token file.
TOKEN_DIR = "/var/run/secrets/egi.eu/datahub"
_TOKEN_FILE = f"{TOKEN_DIR}/token"
STORAGE_COMPONENT = "egi-storage"
#: The Secret's annotation with the expiry (epoch seconds) of each token in it, by data
#: key: not secret, and what the renewal reads after a hub restart.
TOKEN_EXPIRY_ANNOTATION = "egi.eu/token-expiry"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: The labels (KubeSpawner's, from the pod) that say whose server a storage Secret is.
OWNER_LABELS = ("hub.jupyter.org/username", "hub.jupyter.org/servername")

# Host names as a Oneprovider's domain may be written (from Onezone: hostile input).
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?")
# Space ids passed to oneclient (Onezone makes them; checked all the same). Never a
# leading '-': the id is the argument after "--space-id", and must not read as an option.
_SPACE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
# Onedata tokens: printable ASCII without spaces (as the hub-side client checks too).
_TOKEN = re.compile(r"[\x21-\x7e]+")

#: The sidecar's main process (POSIX sh; arguments: token file, mount dir, check
#: interval, then oneclient's options). It reads the token from the file into
#: oneclient's environment (never onto a command line), runs oneclient in the
#: foreground, and when the file changes (the kubelet swaps in the Secret the hub
#: renewed, `egi_hub.storage_mounts.kube_renewal`) unmounts and starts again with the
#: new token. A file that cannot be read or is empty for a moment (the kubelet's swap)
#: is not a new token: the mount stays. On TERM it unmounts, so the notebook container
#: is never left with a dead FUSE mount.
#:
#: oneclient's options as Onedata documents them (onedata/onedata-documentation,
#: docs/user-guide/oneclient.md, "Options" and ``oneclient -h``): ``-f``/``--foreground``,
#: ``-u``/``--unmount`` ("Unmount Oneclient and exit"), and ``fusermount -uz`` to
#: terminate a mount; the token in ``ONECLIENT_ACCESS_TOKEN``.
ONECLIENT_SCRIPT = """\
set -u
token_file="$1"; mnt="$2"; interval="$3"; shift 3
pid=""
unmount() {
  oneclient --unmount "$mnt" >/dev/null 2>&1 || fusermount -uz "$mnt" >/dev/null 2>&1 || true
}
launch() {
  current="$(cat "$token_file")"
  ONECLIENT_ACCESS_TOKEN="$current" oneclient -f "$@" "$mnt" &
  pid=$!
}
trap 'unmount; [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait; exit 0' TERM INT
launch "$@"
while kill -0 "$pid" 2>/dev/null; do
  sleep "$interval" & wait $!
  latest="$(cat "$token_file" 2>/dev/null)" || latest=""
  if [ -n "$latest" ] && [ "$latest" != "$current" ]; then
    echo "oneclient sidecar: the token was renewed, mounting again"
    unmount; wait "$pid"; launch "$@"
  fi
done
wait "$pid"
status=$?
echo "oneclient sidecar: oneclient stopped (exit status $status)"
exit "$status"
"""


#: The notebook container's folder for the keeper's credential files ($EGI_STORAGE_DIR):
#: a memory-backed emptyDir (tmpfs, counted in the pod's memory), gone with the pod.
CREDENTIALS_DIR = "/run/egi-storage"
CREDENTIALS_VOLUME = "egi-storage-credentials"
#: Credential files are a few kilobytes each (at most 100 mounts).
CREDENTIALS_SIZE_LIMIT = "4Mi"


def add_credentials_volume(storage: KubeStorage) -> None:
    """The memory-backed folder of the keeper's credential files, in the notebook
    container only (`CREDENTIALS_DIR`; the spawner points ``$EGI_STORAGE_DIR`` at it)."""
    storage.volumes.append(
        {
            "name": CREDENTIALS_VOLUME,
            "emptyDir": {"medium": "Memory", "sizeLimit": CREDENTIALS_SIZE_LIMIT},
        }
    )
    storage.volume_mounts.append({"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR})


#: What a storage Secret's name adds to its pod's name: with a dot, which KubeSpawner's
#: pod names never hold (both slug schemes escape every character but ``[a-z0-9-]``),
#: so no server's pod name, nor the internal_ssl Secret KubeSpawner names after its
#: pod (``secret_name_template``: ``{pod_name}``), can ever be a storage Secret's name.
#: ``<pod>-storage`` could: user ``alice-storage``'s pod is ``jupyter-alice-storage``.
SECRET_SUFFIX = ".egi-storage"


def secret_name_for(pod_name: str) -> str:
    """The name of a server's storage Secret: its pod's name + `SECRET_SUFFIX` (a DNS
    subdomain, as Secret names are; never a pod name, see `SECRET_SUFFIX`)."""
    return f"{pod_name}{SECRET_SUFFIX}"


def check_pod_name(pod_name: str) -> None:
    """Refuse a pod name a storage Secret cannot be named after: one with a dot (a
    ``pod_name_template`` with a literal ``.`` or ``{unescaped_username}``) could make
    another server's pod or Secret name ``<pod>.egi-storage``; too long a one makes no
    valid Secret name (253 characters at most)."""
    if "." in pod_name or len(secret_name_for(pod_name)) > 253:
        raise ValueError(
            f"The pod name {pod_name!r} cannot name a storage Secret: DataHub sidecars "
            "need KubeSpawner.pod_name_template to make names without '.' of at most "
            f"{253 - len(SECRET_SUFFIX)} characters (its default does)"
        )


def secret_key_for(mount_name: str) -> str:
    """The key of a DataHub mount's token in the server's storage Secret."""
    return f"datahub-{mount_name}"


def datahub_cache_key(user: Any) -> str:
    """The user's key in the hub's DataHub token cache: name and database id, as the
    mounts document uses (a user deleted and made again under the same name never gets
    the first one's cached tokens)."""
    user_id = getattr(user, "id", None)
    return user.name if user_id is None else f"{user.name}#{user_id}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class KubeStorage:
    """What a server's mounts add to its pod, as Kubernetes API dicts (camelCase).

    ``volume_mounts`` go into the notebook container, ``extra_containers`` beside it;
    ``secrets`` must exist before the pod; ``errors`` maps a mount's name to the sentence
    its error entry shows (no sidecar was made for it). Never log ``secrets``.
    """

    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    extra_containers: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list, repr=False)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def secret_names(self) -> list[str]:
        return [s["metadata"]["name"] for s in self.secrets]

    async def create_secrets(self, api: Any, request_timeout: float) -> None:
        """Create the Secrets; this server's own left from an earlier start (a retried
        start) is deleted and made again, so no token of a mount the server lost stays
        in it. One of that name that is not this server's is never touched: the start
        fails with `StorageSecretConflict`."""
        from kubernetes_asyncio.client.rest import ApiException

        for secret in self.secrets:
            meta = secret["metadata"]
            for attempt in (1, 2):
                try:
                    await asyncio.wait_for(
                        api.create_namespaced_secret(meta["namespace"], secret), request_timeout
                    )
                    break
                except ApiException as e:
                    if e.status != 409 or attempt == 2:
                        raise
                found = await delete_own_secret(
                    api, meta["namespace"], meta["name"], meta["labels"], request_timeout
                )
                if found is False:
                    raise StorageSecretConflict(meta["namespace"], meta["name"])

    async def own_secrets(self, api: Any, pod: Any, request_timeout: float) -> None:
        """Make the pod the Secrets' owner, so Kubernetes deletes them with it even if
        the hub never runs its stop. Best effort: the stop deletes them anyway."""
        from kubernetes_asyncio.client.rest import ApiException

        if not self.secrets:
            return
        try:
            created = await asyncio.wait_for(
                api.read_namespaced_pod(
                    pod.metadata.name, self.secrets[0]["metadata"]["namespace"]
                ),
                request_timeout,
            )
            owner = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": created.metadata.name,
                "uid": created.metadata.uid,
            }
            for secret in self.secrets:
                meta = secret["metadata"]
                meta["ownerReferences"] = [owner]
                await asyncio.wait_for(
                    api.patch_namespaced_secret(
                        meta["name"],
                        meta["namespace"],
                        {"metadata": {"ownerReferences": [owner]}},
                        _content_type="application/merge-patch+json",
                    ),
                    request_timeout,
                )
        except (ApiException, TimeoutError) as e:
            reason = getattr(e, "reason", None) or type(e).__name__
            log.warning("Storage Secret of pod %s has no owner (%s)", pod.metadata.name, reason)


class KubeMounts(Configurable):
    """How mounts become pod parts on Kubernetes (the oneclient sidecar's settings)."""

    oneclient_image = Unicode(
        "docker.io/onedata/oneclient:21.02.5",
        help="""
        The oneclient image of the DataHub sidecar. Onedata recommends the same release
        as the Onezone and Oneprovider it talks to.
        """,
    ).tag(config=True)

    oneclient_resources = Dict(
        {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        help="The DataHub sidecar's resources (Kubernetes ResourceRequirements).",
    ).tag(config=True)

    token_check_interval = Integer(
        30,
        min=5,
        help="""
        Seconds between the sidecar's checks of its token file; a renewed token is
        picked up (and the spaces mounted again) within this time plus the kubelet's
        Secret sync period.
        """,
    ).tag(config=True)

    renew_tokens = Bool(
        True,
        help="""
        Renew the DataHub sidecars' Onedata tokens in running servers (the hub patches
        each server's storage Secret before the token expires, as
        ``MountCredentials.datahub_renew_before`` says; the sidecar mounts again with
        the new token). Off: a sidecar's mount ends when its token does (after
        ``MountCredentials.datahub_token_lifetime``).
        """,
    ).tag(config=True)

    token_retry_min = Float(
        30,
        min=0.01,
        help="""
        Seconds before the first retry of a failed sidecar token renewal (Onezone down,
        Check-in session ended); each further failure doubles the wait, up to
        ``token_retry_max``. The old token stays in the Secret meanwhile.
        """,
    ).tag(config=True)

    token_retry_max = Float(
        300,
        min=0.01,
        help="The longest wait, in seconds, between retries of a failed sidecar token renewal.",
    ).tag(config=True)

    def render(
        self,
        resolved: Sequence[ResolvedMount],
        credentials: Mapping[str, DatahubCredentials | None],
        *,
        pod_name: str,
        namespace: str,
        labels: Mapping[str, str] | None = None,
    ) -> KubeStorage:
        """The pod parts and Secret for one server.

        ``credentials`` maps a DataHub mount's name to its ``oneclient`` credentials
        (`DatahubTokens.credentials` with `DatahubUse.ONECLIENT`); a mount missing from
        it, or mapped to None, gets an error entry and no sidecar. S3 mounts add nothing
        (in-notebook fsspec); NFS mounts add a volume.
        """
        out = KubeStorage()
        secret_data: dict[str, str] = {}
        expiry: dict[str, int] = {}
        secret_name = secret_name_for(pod_name)
        for entry in resolved:
            mount = entry.mount
            if isinstance(mount, NFSMount):
                self._nfs(entry, mount, out)
            elif isinstance(mount, DatahubMount):
                creds = credentials.get(mount.name)
                if creds is None:
                    out.errors[mount.name] = (
                        "DataHub: no Onedata token for this server (see the hub's message)"
                    )
                    continue
                if self._datahub(entry, mount, creds, secret_name, secret_data, out):
                    expiry[secret_key_for(mount.name)] = int(creds.token.valid_until)
            elif isinstance(mount, S3Mount):
                continue  # in-notebook fsspec with the keeper's credentials
            else:
                raise ValueError(f"No Kubernetes rendering for mount kind {mount.kind!r}")
        if secret_data:
            check_pod_name(pod_name)
            out.secrets.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": secret_name,
                        "namespace": namespace,
                        "labels": {
                            **dict(labels or {}),
                            "app.kubernetes.io/component": STORAGE_COMPONENT,
                        },
                        "annotations": {
                            TOKEN_EXPIRY_ANNOTATION: json.dumps(expiry, sort_keys=True)
                        },
                    },
                    "type": "Opaque",
                    "data": secret_data,
                }
            )
        return out

    def _nfs(self, entry: ResolvedMount, mount: NFSMount, out: KubeStorage) -> None:
        volume = f"mount-{mount.name}"
        nfs = {"server": mount.server, "path": entry.settings.get("export", mount.export)}
        if mount.read_only:
            nfs["readOnly"] = True
        out.volumes.append({"name": volume, "nfs": nfs})
        out.volume_mounts.append(
            {"name": volume, "mountPath": mount.path, "readOnly": mount.read_only}
        )

    def _datahub(
        self,
        entry: ResolvedMount,
        mount: DatahubMount,
        creds: DatahubCredentials,
        secret_name: str,
        secret_data: dict[str, str],
        out: KubeStorage,
    ) -> bool:
        """Add the mount's sidecar and its token; False (an error entry) when no online
        Oneprovider supports its spaces."""
        token = creds.token
        if token.use != DatahubUse.ONECLIENT:
            # A REST token cannot mount (Onedata enforces the interface caveat): a bug.
            raise ValueError(
                f"DataHub mount {mount.name!r}: the sidecar needs a 'oneclient' token, "
                f"got a {token.use.value!r} one"
            )
        if not _TOKEN.fullmatch(token.token):
            raise ValueError(f"DataHub mount {mount.name!r}: the token is not printable text")
        if mount.read_only and not token.read_only:
            raise ValueError(
                f"DataHub mount {mount.name!r} is read-only and the token is not: "
                "ask for a data.readonly token"
            )
        try:
            host, spaces = choose_provider(creds.scope, mount.spaces)
        except AmbiguousSpaceName as e:
            out.errors[mount.name] = f"DataHub: {e}"
            return False
        if host is None:
            out.errors[mount.name] = "DataHub: no online Oneprovider supports " + (
                "the spaces of this mount" if mount.spaces else "any of your spaces"
            )
            return False
        key = secret_key_for(mount.name)
        secret_data[key] = _b64(token.token)
        shared = f"mount-{mount.name}"
        token_volume = f"oneclient-token-{mount.name}"
        out.volumes.append({"name": shared, "emptyDir": {}})
        out.volumes.append(
            {
                "name": token_volume,
                "secret": {
                    "secretName": secret_name,
                    "items": [{"key": key, "path": "token"}],
                    "defaultMode": 0o400,
                },
            }
        )
        out.volume_mounts.append(
            {
                "name": shared,
                "mountPath": mount.path,
                "mountPropagation": "HostToContainer",
                "readOnly": mount.read_only,
            }
        )
        # oneclient's options, as onedata/onedata-documentation docs/user-guide/oneclient.md
        # documents them: "--space-id <id>" once per space ("Mounting selected spaces
        # only"); "-o <mount_option>" passed to FUSE ("FUSE options"): "ro" for a
        # read-only mount, and "allow_other" (as its systemd example does) because
        # oneclient runs as root here and FUSE lets only the mounting user in otherwise:
        # the notebook's user could not read the spaces. Direct I/O is left to
        # oneclient's detection (it falls back to proxy I/O through the Oneprovider
        # when the pod cannot reach the storage; "--force-proxy-io" only disables it).
        options = ["-o", "allow_other"]
        for space_id in spaces:
            options += ["--space-id", space_id]
        if mount.read_only:
            options += ["-o", "ro"]
        # "-H <host>" takes a host name only, the port is "-P <port>" (=443) (the same
        # page's option list); ONECLIENT_PROVIDER_HOST is "-H" from the environment.
        provider_host, _, port = host.partition(":")
        if port:
            options += ["--port", port]
        out.extra_containers.append(
            {
                "name": f"oneclient-{mount.name}",
                "image": self.oneclient_image,
                "command": ["/bin/sh", "-c", ONECLIENT_SCRIPT, "oneclient-sidecar"],
                "args": [
                    _TOKEN_FILE,
                    ONECLIENT_MOUNT_DIR,
                    str(self.token_check_interval),
                    *options,
                ],
                "env": [{"name": "ONECLIENT_PROVIDER_HOST", "value": provider_host}],
                "resources": dict(self.oneclient_resources),
                # FUSE needs /dev/fuse and CAP_SYS_ADMIN; Bidirectional propagation
                # needs a privileged container (the API server refuses it otherwise).
                "securityContext": {"privileged": True, "runAsUser": 0},
                "volumeMounts": [
                    {
                        "name": shared,
                        "mountPath": ONECLIENT_MOUNT_DIR,
                        "mountPropagation": "Bidirectional",
                    },
                    {"name": token_volume, "mountPath": TOKEN_DIR, "readOnly": True},
                ],
            }
        )
        return True


def choose_provider(
    scope: DatahubScope, wanted: Sequence[str] = ()
) -> tuple[str | None, list[str]]:
    """The Oneprovider the sidecar connects to, and the ids of the spaces to name on its
    command line (none: every space the token reaches).

    oneclient talks to one Oneprovider: the one that supports most of the mount's
    spaces. ``wanted`` (the mount's ``spaces``) keeps only the spaces it names, by the
    one rule of `egi_hub.spaces.match_spaces` (id, ``name@id``, or a name one space
    carries); a name several spaces carry raises `AmbiguousSpaceName`, as a lookalike
    space's provider would otherwise be sent the token. Ties are broken by what a
    provider's admin cannot choose: writable supports first, then the provider id
    Onezone assigned (never the domain, which a provider's admin picks and could pick
    to sort first). Domains and space ids come from Onezone, so both are checked: a
    domain must be a host name, an id letters, digits, ``_`` and ``-``. Spaces go to
    oneclient by id (``--space-id``): names are chosen by users and need not be unique.
    """
    spaces: list[DatahubSpace] = list(scope.spaces)
    if wanted:
        ids = set(match_spaces(wanted, {s.space_id: s.name for s in spaces}))
        spaces = [s for s in spaces if s.space_id in ids]
    spaces = [s for s in spaces if s.available]
    counts: Counter[str] = Counter()
    writable: Counter[str] = Counter()
    domains: dict[str, str] = {}  # provider id -> domain
    for space in spaces:
        for support in {s.provider_id: s for s in space.supports}.values():
            if _HOST.fullmatch(support.domain):
                counts[support.provider_id] += 1
                writable[support.provider_id] += not support.read_only
                domains.setdefault(support.provider_id, support.domain)
    if not counts:
        return None, []
    best = min(counts, key=lambda p: (-counts[p], -writable[p], p))
    host = domains[best]
    if not wanted:
        return host, []
    ids = [
        space.space_id
        for space in spaces
        if any(s.provider_id == best for s in space.supports)
        and _SPACE_ID.fullmatch(space.space_id)
    ]
    if not ids:  # no --space-id would mount every space: not what the mount says
        return None, []
    return host, ids


def add_to_pod(pod: Any, storage: KubeStorage) -> None:
    """Put the volumes, the notebook's volumeMounts and the sidecars into KubeSpawner's
    pod (a ``V1Pod``; its first container is the notebook). A name the pod already uses
    is an error naming it, not a silent replacement."""
    from kubernetes_asyncio.client import V1Container, V1Volume, V1VolumeMount
    from kubespawner.utils import get_k8s_model

    spec = pod.spec
    notebook = spec.containers[0]
    taken = {getattr(v, "name", None) for v in spec.volumes or []}
    for volume in storage.volumes:
        if volume["name"] in taken:
            raise ValueError(f"The pod already has a volume named {volume['name']!r}")
    names = {c.name for c in [*spec.containers, *(spec.init_containers or [])]}
    for container in storage.extra_containers:
        if container["name"] in names:
            raise ValueError(f"The pod already has a container named {container['name']!r}")
    paths = {m.mount_path for m in notebook.volume_mounts or []}
    for mount in storage.volume_mounts:
        if mount["mountPath"] in paths:
            raise ValueError(f"The notebook container already mounts {mount['mountPath']!r}")
    spec.volumes = [*(spec.volumes or []), *(get_k8s_model(V1Volume, v) for v in storage.volumes)]
    notebook.volume_mounts = [
        *(notebook.volume_mounts or []),
        *(get_k8s_model(V1VolumeMount, m) for m in storage.volume_mounts),
    ]
    spec.containers = [
        *spec.containers,
        *(get_k8s_model(V1Container, c) for c in storage.extra_containers),
    ]
    if storage.extra_containers:
        # Said explicitly: with a shared process namespace the notebook could read the
        # privileged sidecar's /proc/<pid>/environ and root file system (its token file).
        spec.share_process_namespace = False


async def storage_for_pod(spawner: Any, pod: Any) -> KubeStorage | None:
    """The hook of `EGIKubeSpawner.get_pod_manifest`: this server's mounts (from
    `StorageSpawnerMixin.egi_mounts`) rendered and added to ``pod``; None without mounts.

    DataHub sidecars get ``oneclient`` tokens from the hub's token cache
    (`MountCredentials.datahub_tokens`), made from the user's Check-in access token in
    the auth state (JupyterHub refreshes it before a spawn). A failure leaves that mount
    without a sidecar; the reason is logged (it never holds a token) and the keeper's
    mounts document shows the mount's error entry.
    """
    from .credentials import MountCredentials
    from .datahub_tokens import DatahubCredentialError

    egi_mounts = getattr(spawner, "egi_mounts", None)  # StorageSpawnerMixin's
    resolved = await egi_mounts() if egi_mounts is not None else ()
    if not resolved:
        return None
    creds: dict[str, DatahubCredentials | None] = {}
    datahub = [r for r in resolved if isinstance(r.mount, DatahubMount)]
    if datahub:
        store = MountCredentials.instance(config=spawner.config)

        async def checkin_token() -> str:
            state = await spawner.user.get_auth_state() or {}
            token = state.get("access_token")
            if not token:
                raise DatahubCredentialError(
                    "this account has no Check-in access token", "no_checkin_token"
                )
            return str(token)

        for item in datahub:
            mount = item.mount
            assert isinstance(mount, DatahubMount)
            try:
                creds[mount.name] = await store.datahub_tokens(mount).credentials(
                    datahub_cache_key(spawner.user),
                    checkin_token,
                    DatahubUse.ONECLIENT,
                    mount.read_only,
                    spaces=mount.spaces,  # narrowed to, and cached per, the mount's spaces
                )
            except DatahubCredentialError as e:
                spawner.log.warning("DataHub mount %r: no sidecar (%s)", mount.name, e.reason)
                creds[mount.name] = None
    storage = KubeMounts(parent=spawner).render(
        resolved,
        creds,
        pod_name=spawner.pod_name,
        namespace=spawner.namespace,
        labels=dict(pod.metadata.labels or {}),
    )
    add_credentials_volume(storage)
    add_to_pod(pod, storage)
    return storage


class StorageSecretConflict(RuntimeError):
    """A Secret with the name of a server's storage Secret is someone else's."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(
            f"The storage Secret {name!r} cannot be made: a Secret of that name in "
            f"namespace {namespace!r} is not this server's (ask the hub's admins)"
        )


def is_own_secret(labels: Mapping[str, str] | None, expected: Mapping[str, str]) -> bool:
    """Whether a Secret's labels make it the storage Secret of the server whose pod
    labels are ``expected`` (the component label, and the same user and server)."""
    labels = labels or {}
    return labels.get(COMPONENT_LABEL) == STORAGE_COMPONENT and all(
        key in expected and labels.get(key) == expected[key] for key in OWNER_LABELS
    )


async def delete_own_secret(
    api: Any,
    namespace: str,
    name: str,
    expected: Mapping[str, str],
    request_timeout: float,
) -> bool | None:
    """Delete the Secret ``name`` if it is the storage Secret of the server whose pod
    labels are ``expected`` (`is_own_secret`), with its uid as a precondition.

    Returns None when there is none, False when it is someone else's (left alone, one
    warning), True when it was deleted (or went, or was made again, meanwhile).
    """
    from kubernetes_asyncio.client import V1DeleteOptions, V1Preconditions
    from kubernetes_asyncio.client.rest import ApiException

    try:
        found = await asyncio.wait_for(api.read_namespaced_secret(name, namespace), request_timeout)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    meta = found.metadata
    if not is_own_secret(meta.labels, expected):
        log.warning("Secret %s/%s is not this server's storage Secret: left alone", namespace, name)
        return False
    options = V1DeleteOptions(preconditions=V1Preconditions(uid=meta.uid))
    try:
        await asyncio.wait_for(
            api.delete_namespaced_secret(name, namespace, body=options), request_timeout
        )
    except ApiException as e:
        # 404: gone meanwhile; 409: the uid differs, another Secret of that name now.
        if e.status not in (404, 409):
            raise
    return True


async def delete_storage_secret(
    api: Any,
    namespace: str,
    pod_name: str,
    pod_labels: Mapping[str, str],
    request_timeout: float,
) -> None:
    """Delete a server's storage Secret if there is one and it is the server's own."""
    await delete_own_secret(api, namespace, secret_name_for(pod_name), pod_labels, request_timeout)
