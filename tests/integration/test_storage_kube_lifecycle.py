"""Storage credentials over a Kubernetes server's life: where the keeper keeps them, and
whose storage Secrets the hub may replace or delete.

The Kubernetes API is kmock, an emulator (plus a fake kubelet, tests/kube.py); manifests
are checked with kubernetes-validate --strict. Onezone is not asked: the hub's DataHub
token cache is replaced by `FixedTokens` (see tests/integration/test_storage_kube.py).
"""

from __future__ import annotations

import json

import kubernetes_validate

from egi_hub.storage_mounts.kube import CREDENTIALS_DIR
from tests.integration.test_kube_spawner import pods, spawner
from tests.integration.test_storage_kube import (  # noqa: F401  (site: autouse fixture)
    declare_secrets,
    secrets,
    site,
    user_with_checkin_token,
)
from tests.kube import kubernetes


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


async def test_credential_files_live_on_a_memory_volume_of_the_notebook_kmock_emulator(
    tmp_path,
):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        user_with_checkin_token(s)
        await s.start()
        (pod,) = pods(api)
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["egi-storage-credentials"]["emptyDir"] == {
            "medium": "Memory",
            "sizeLimit": "4Mi",
        }
        notebook, *sidecars = spec["containers"]
        assert {
            m["mountPath"]
            for m in notebook["volumeMounts"]
            if m["name"] == "egi-storage-credentials"
        } == {CREDENTIALS_DIR}
        for sidecar in sidecars:  # the sidecars never see the notebook's credentials
            assert "egi-storage-credentials" not in json.dumps(sidecar)
        env = env_of(notebook)
        assert env["EGI_STORAGE_DIR"] == CREDENTIALS_DIR
        # The document (no secrets in it) stays beside the checkpoints in the home.
        assert env["EGI_MOUNTS_FILE"] == "~/.egi/servers/default/mounts.json"
        clean = {k: v for k, v in json.loads(json.dumps(pod.raw)).items() if k != "status"}
        for version in ("1.29.0", "1.33.0"):
            kubernetes_validate.validate(clean, version, strict=True)
        await s.stop()


async def test_a_server_without_mounts_gets_no_credential_volume_kmock_emulator(tmp_path):
    from egi_hub.storage_mounts.mounts import StorageMounts

    StorageMounts.instance().mounts = []
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        await s.start()
        (pod,) = pods(api)
        assert "egi-storage-credentials" not in json.dumps(pod.raw)
        assert "EGI_STORAGE_DIR" not in env_of(pod["spec"]["containers"][0])
        await s.stop()
        assert secrets(api) == []
