"""An upgrade keeps the chart's generated secrets: the real helm's ``lookup`` against a
Kubernetes API stand-in.

No API server runs here, so the API is kmock's emulator (tests/kube.py's `ApiServer`, a
stand-in following the Kubernetes API's documented paths). ``helm template
--dry-run=server`` renders as ``helm install``/``helm upgrade`` do, ``lookup`` included
(plain ``helm template`` answers every lookup with nothing). Between renders the test
stores the hub Secret in the stand-in as an install would: what the next render reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kmock import ResourceInfo, Server

from tests.integration.test_helm_chart import CHART, HEX64, find, secret_data
from tests.kube import ApiServer, write_kubeconfig

NAMESPACE = "hub"
SECRET = "r-egi-hub-hub"
GENERATED = ("crypt-key", "cookie-secret", "proxy-token")


class Cluster:
    """The stand-in's address and kubeconfig, and the chart rendered against it."""

    def __init__(self, helm: Path, base: str, kubeconfig: Path) -> None:
        self.helm, self.base, self.kubeconfig = helm, base, kubeconfig

    async def render(self, *args: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        proc = await asyncio.create_subprocess_exec(
            str(self.helm), "template", "r", str(CHART), "--namespace", namespace,
            "--dry-run=server", "--kubeconfig", str(self.kubeconfig), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return [doc for doc in yaml.safe_load_all(out) if doc]

    async def install(self, docs: list[dict[str, Any]], namespace: str = NAMESPACE) -> None:
        """Store the rendered hub Secret (replacing an older one), as helm would apply it."""
        secret = find(docs, "Secret", SECRET)
        url = f"{self.base}/api/v1/namespaces/{namespace}/secrets"
        async with aiohttp.ClientSession() as session:
            async with session.delete(f"{url}/{SECRET}"):
                pass
            async with session.post(url, json=secret) as response:
                assert response.status in (200, 201), await response.text()


@pytest.fixture
async def cluster(helm: Path, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with ApiServer() as api, Server(api) as server:
        api.resources["v1/secrets"] = ResourceInfo(
            namespaced=True, kind="Secret", verbs={"get", "list", "create", "delete", "patch"}
        )
        base = str(server.url).rstrip("/")
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", base)
        yield Cluster(helm, base, kubeconfig)


async def test_an_upgrade_keeps_the_generated_secrets(cluster: Cluster) -> None:
    first = secret_data(find(await cluster.render(), "Secret", SECRET))
    for key in GENERATED:
        assert HEX64.match(first[key]), key
    assert "checkin-client-secret" not in first  # none given: the hub starts without one
    await cluster.install(await cluster.render(*_given("the-first-client-secret")))
    installed = secret_data(find(await cluster.render(), "Secret", SECRET))
    # The upgrade without values: every generated secret and the given client secret kept.
    assert installed["checkin-client-secret"] == "the-first-client-secret"
    await cluster.install(await cluster.render())
    upgraded = secret_data(find(await cluster.render(), "Secret", SECRET))
    assert upgraded == installed
    # A value given at an upgrade wins, and is kept from then on.
    await cluster.install(await cluster.render(*_given("a-rotated-secret")))
    rotated = secret_data(find(await cluster.render(), "Secret", SECRET))
    assert rotated["checkin-client-secret"] == "a-rotated-secret"
    assert {k: rotated[k] for k in GENERATED} == {k: installed[k] for k in GENERATED}


async def test_a_release_in_another_namespace_gets_secrets_of_its_own(cluster: Cluster) -> None:
    await cluster.install(await cluster.render())
    kept = secret_data(find(await cluster.render(), "Secret", SECRET))
    other = secret_data(find(await cluster.render(namespace="elsewhere"), "Secret", SECRET))
    for key in GENERATED:  # never read across namespaces
        assert other[key] != kept[key], key


async def test_a_first_install_generates_new_secrets_each_time(cluster: Cluster) -> None:
    one = secret_data(find(await cluster.render(), "Secret", SECRET))
    two = secret_data(find(await cluster.render(), "Secret", SECRET))
    for key in GENERATED:  # random, not derived from the release's name
        assert one[key] != two[key], key


def _given(client_secret: str) -> list[str]:
    return ["--set", f"hub.checkin.clientSecret={client_secret}"]
