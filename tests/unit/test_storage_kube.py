"""Kubernetes rendering of storage mounts (storage_mounts/kube.py): NFS volumes, DataHub
oneclient sidecars with their token Secret, nothing for S3; every manifest checked with
kubernetes-validate --strict."""

from __future__ import annotations

import base64
import json
import time

import kubernetes_validate
import pytest

from egi_hub.context import UserContext
from egi_hub.storage_mounts.datahub_tokens import (
    DatahubCredentials,
    DatahubScope,
    DatahubSpace,
    DatahubSupport,
    DatahubToken,
    DatahubUse,
)
from egi_hub.storage_mounts.kube import (
    ONECLIENT_MOUNT_DIR,
    KubeMounts,
    add_to_pod,
    choose_provider,
    secret_name_for,
)
from egi_hub.storage_mounts.mounts import parse_mount

NOTEBOOKS = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
TOKEN = "MDAxY2xvY2F0aW9uIG9uZXpvbmUK-oneclient-secret"
VERSIONS = ("1.29.0", "1.33.0")


def support(domain: str, read_only: bool = False) -> DatahubSupport:
    return DatahubSupport(f"id-{domain}", domain, domain, "21.02.5", read_only)


def space(space_id: str, name: str, *domains: str) -> DatahubSpace:
    return DatahubSpace(space_id, name, False, tuple(support(d) for d in domains))


def creds(*spaces: DatahubSpace, read_only=False, use=DatahubUse.ONECLIENT, token=TOKEN):
    t = DatahubToken(token, use, read_only, time.time() + 3600)
    return DatahubCredentials(t, DatahubScope(time.time() + 3600, read_only, tuple(spaces)))


def resolve(*entries: dict, user: str = "alice"):
    context = UserContext.from_entitlements(user, [NOTEBOOKS])
    return [parse_mount(e, f"[{i}]").resolve(context, None) for i, e in enumerate(entries)]


NFS = {
    "name": "shared",
    "kind": "nfs",
    "server": "nfs.example.org",
    "export": "/exports/{vo}",
    "path": "/nfs/shared",
}
NFS_RO = {**NFS, "name": "ro", "path": "/nfs/ro", "read_only": True}
DATAHUB = {
    "name": "datahub",
    "kind": "datahub",
    "onezone_url": "https://datahub.egi.eu",
    "path": "/datahub",
}
S3 = {
    "name": "scratch",
    "kind": "s3",
    "endpoint_url": "https://s3.example.org",
    "bucket": "{vo}-scratch",
    "credentials": {"per_vo": {"vo.notebooks.egi.eu": {"key": "K", "secret": "S"}}},
    "path": "/s3/scratch",
}
SPACES = (
    space("sp1", "space-a", "p1.example.org", "p2.example.org"),
    space("sp2", "space-b", "p2.example.org"),
)


def render(resolved, credentials, **kw):
    return KubeMounts(**kw).render(
        resolved,
        credentials,
        pod_name="jupyter-alice",
        namespace="hub",
        labels={"hub.jupyter.org/username": "alice"},
    )


async def pod_with(storage) -> dict:
    """A pod as KubeSpawner makes it (notebook container first), with the storage added."""
    from kubernetes_asyncio.client import ApiClient, V1Container, V1ObjectMeta, V1Pod, V1PodSpec

    pod = V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(name="jupyter-alice", namespace="hub"),
        spec=V1PodSpec(containers=[V1Container(name="notebook", image="jupyter/base:1")]),
    )
    add_to_pod(pod, storage)
    async with ApiClient() as client:
        return client.sanitize_for_serialization(pod)


def test_nfs_is_a_native_volume_read_only_when_the_mount_is():
    storage = render(resolve(NFS, NFS_RO), {})
    assert storage.volumes == [
        {
            "name": "mount-shared",
            "nfs": {"server": "nfs.example.org", "path": "/exports/vo.notebooks.egi.eu"},
        },
        {
            "name": "mount-ro",
            "nfs": {
                "server": "nfs.example.org",
                "path": "/exports/vo.notebooks.egi.eu",
                "readOnly": True,
            },
        },
    ]
    assert storage.volume_mounts == [
        {"name": "mount-shared", "mountPath": "/nfs/shared", "readOnly": False},
        {"name": "mount-ro", "mountPath": "/nfs/ro", "readOnly": True},
    ]
    assert storage.extra_containers == [] and storage.secrets == [] and storage.errors == {}


def test_s3_adds_nothing_to_the_pod():
    storage = render(resolve(S3), {})
    assert (storage.volumes, storage.extra_containers, storage.secrets) == ([], [], [])


async def test_datahub_sidecar_propagation_and_token_only_in_the_sidecar():
    storage = render(resolve(DATAHUB), {"datahub": creds(*SPACES)})
    (sidecar,) = storage.extra_containers
    assert sidecar["name"] == "oneclient-datahub"
    assert sidecar["securityContext"]["privileged"] is True
    assert sidecar["env"] == [{"name": "ONECLIENT_PROVIDER_HOST", "value": "p2.example.org"}]
    shared, token_mount = sidecar["volumeMounts"]
    assert shared == {
        "name": "mount-datahub",
        "mountPath": ONECLIENT_MOUNT_DIR,
        "mountPropagation": "Bidirectional",
    }
    assert token_mount["readOnly"] is True
    assert storage.volume_mounts == [
        {
            "name": "mount-datahub",
            "mountPath": "/datahub",
            "mountPropagation": "HostToContainer",
            "readOnly": False,
        }
    ]
    (secret,) = storage.secrets
    assert (
        secret["metadata"]["name"]
        == secret_name_for("jupyter-alice")
        == "jupyter-alice.egi-storage"
    )
    assert base64.b64decode(secret["data"]["datahub-datahub"]).decode() == TOKEN
    token_volume = next(v for v in storage.volumes if "secret" in v)
    assert token_volume["secret"]["items"] == [{"key": "datahub-datahub", "path": "token"}]
    assert token_volume["secret"]["defaultMode"] == 0o400
    # The token itself is in the Secret only: not in the pod, not in any container.
    pod = await pod_with(storage)
    assert TOKEN not in json.dumps(pod)
    notebook = pod["spec"]["containers"][0]
    assert notebook["name"] == "notebook" and "env" not in notebook
    assert [m["name"] for m in notebook["volumeMounts"]] == ["mount-datahub"]
    users = [
        c["name"]
        for c in pod["spec"]["containers"]
        if any(m["name"] == token_volume["name"] for m in c.get("volumeMounts", []))
    ]
    assert users == ["oneclient-datahub"]
    assert "privileged" not in json.dumps(notebook)
    assert "ONECLIENT_ACCESS_TOKEN" not in json.dumps(sidecar["env"])
    # Said explicitly: the notebook never sees the privileged sidecar's processes.
    assert pod["spec"]["shareProcessNamespace"] is False


def test_read_only_datahub_is_read_only_everywhere():
    mount = {**DATAHUB, "read_only": True}
    storage = render(resolve(mount), {"datahub": creds(*SPACES, read_only=True)})
    assert storage.volume_mounts[0]["readOnly"] is True
    args = storage.extra_containers[0]["args"]
    assert args[3:] == ["-o", "allow_other", "-o", "ro"]
    with pytest.raises(ValueError, match="read-only and the token is not"):
        render(resolve(mount), {"datahub": creds(*SPACES)})


def test_a_rest_token_is_never_given_to_the_sidecar():
    with pytest.raises(ValueError, match="needs a 'oneclient' token, got a 'rest' one"):
        render(resolve(DATAHUB), {"datahub": creds(*SPACES, use=DatahubUse.REST)})


def test_datahub_without_credentials_or_provider_is_an_error_entry_without_sidecar():
    storage = render(resolve(DATAHUB, NFS), {"datahub": None})
    assert storage.errors == {
        "datahub": "DataHub: no Onedata token for this server (see the hub's message)"
    }
    assert storage.extra_containers == [] and storage.secrets == []
    assert [v["name"] for v in storage.volumes] == ["mount-shared"]
    offline = DatahubSpace("sp1", "space-a", False, ())
    storage = render(resolve(DATAHUB), {"datahub": creds(offline)})
    assert storage.errors["datahub"] == "DataHub: no online Oneprovider supports any of your spaces"


def test_provider_supporting_most_spaces_and_space_ids_from_the_mount():
    assert choose_provider(DatahubScope(None, False, SPACES)) == ("p2.example.org", [])
    tie = (space("a", "a", "z.example.org"), space("b", "b", "y.example.org"))
    assert choose_provider(DatahubScope(None, False, tie)) == ("y.example.org", [])
    assert choose_provider(DatahubScope(None, False, SPACES), ["space-a"]) == (
        "p1.example.org",
        ["sp1"],
    )
    mount = {**DATAHUB, "spaces": ["space-a", "sp2"]}
    storage = render(resolve(mount), {"datahub": creds(*SPACES)})
    args = storage.extra_containers[0]["args"]
    # As Onedata documents them: "-o allow_other" (the notebook's user is not root, who
    # runs oneclient), then "--space-id <id>" once per space.
    assert args[3:] == ["-o", "allow_other", "--space-id", "sp1", "--space-id", "sp2"]


def test_a_provider_port_goes_to_port_not_into_the_host():
    """oneclient's -H takes a host name, the port is -P/--port (Onedata's option list)."""
    ported = (space("sp1", "space-a", "p1.example.org:8443"),)
    storage = render(resolve(DATAHUB), {"datahub": creds(*ported)})
    sidecar = storage.extra_containers[0]
    assert sidecar["env"] == [{"name": "ONECLIENT_PROVIDER_HOST", "value": "p1.example.org"}]
    assert sidecar["args"][-2:] == ["--port", "8443"]


def test_hostile_onezone_answers_never_reach_the_sidecar():
    evil = (space("sp1", "x", "evil.org; rm -rf /", "-oallow_other"),)
    assert choose_provider(DatahubScope(None, False, evil)) == (None, [])
    bad_id = (space("--opt=allow_other", "a", "p.example.org"),)
    # Asked for by name, the space's id is not one: no --space-id, so no sidecar at all
    # (mounting every space instead would ignore the mount's list).
    assert choose_provider(DatahubScope(None, False, bad_id), ["a"]) == (None, [])
    # An id that would read as an option after "--space-id" is refused too.
    dashed = (space("-oallow_other", "a", "p.example.org"),)
    assert choose_provider(DatahubScope(None, False, dashed), ["a"]) == (None, [])
    with pytest.raises(ValueError, match="not printable text"):
        render(resolve(DATAHUB), {"datahub": creds(*SPACES, token="a b\n")})


def test_the_script_takes_everything_as_arguments():
    """Nothing from the user or Onezone is put into the shell script's text."""
    storage = render(resolve({**DATAHUB, "spaces": ["space-a"]}), {"datahub": creds(*SPACES)})
    sidecar = storage.extra_containers[0]
    assert sidecar["command"][:2] == ["/bin/sh", "-c"]
    script = sidecar["command"][2]
    for value in ("sp1", "p1.example.org", TOKEN):
        assert value not in script
    assert sidecar["args"][:3] == ["/var/run/secrets/egi.eu/datahub/token", "/mnt/oneclient", "30"]


def test_names_are_valid_and_do_not_clash_with_the_pod():
    long = "a" * 40
    storage = render(
        resolve({**DATAHUB, "name": long}, {**NFS, "name": "b" * 40}), {long: creds(*SPACES)}
    )
    for name in [v["name"] for v in storage.volumes] + [
        c["name"] for c in storage.extra_containers
    ]:
        assert len(name) <= 63 and name.replace("-", "").isalnum() and name.islower()
    storage = render(resolve(NFS), {})
    from kubernetes_asyncio.client import (
        V1Container,
        V1ObjectMeta,
        V1Pod,
        V1PodSpec,
        V1Volume,
        V1VolumeMount,
    )

    pod = V1Pod(
        metadata=V1ObjectMeta(name="p"),
        spec=V1PodSpec(
            containers=[
                V1Container(
                    name="notebook",
                    volume_mounts=[V1VolumeMount(name="home", mount_path="/nfs/shared")],
                )
            ],
            volumes=[V1Volume(name="home")],
        ),
    )
    with pytest.raises(ValueError, match="already mounts '/nfs/shared'"):
        add_to_pod(pod, storage)
    pod.spec.volumes = [V1Volume(name="mount-shared")]
    with pytest.raises(ValueError, match="already has a volume named 'mount-shared'"):
        add_to_pod(pod, storage)


@pytest.mark.parametrize("version", VERSIONS)
async def test_pod_and_secret_pass_kubernetes_validate_strict(version):
    storage = render(
        resolve(
            NFS,
            NFS_RO,
            S3,
            {**DATAHUB, "read_only": True},
            {**DATAHUB, "name": "dh2", "path": "/dh2"},
        ),
        {"datahub": creds(*SPACES, read_only=True), "dh2": creds(*SPACES)},
    )
    assert len(storage.extra_containers) == 2
    kubernetes_validate.validate(await pod_with(storage), version, strict=True)
    (secret,) = storage.secrets
    assert sorted(secret["data"]) == ["datahub-datahub", "datahub-dh2"]
    kubernetes_validate.validate(secret, version, strict=True)


def test_secrets_stay_out_of_the_repr():
    storage = render(resolve(DATAHUB), {"datahub": creds(*SPACES)})
    assert TOKEN not in repr(storage)
    assert base64.b64encode(TOKEN.encode()).decode() not in repr(storage)


async def test_share_process_namespace_is_left_alone_without_a_sidecar():
    pod = await pod_with(render(resolve(NFS), {}))
    assert "shareProcessNamespace" not in pod["spec"]
