"""An upgrade keeps the chart's generated secrets: the real helm's ``lookup`` against a
Kubernetes API stand-in.

No API server runs here, so the API is kmock's emulator (tests/kube.py's `ApiServer`, a
stand-in following the Kubernetes API's documented paths). ``helm template
--dry-run=server`` renders as ``helm install``/``helm upgrade`` do, ``lookup`` included
(plain ``helm template`` answers every lookup with nothing). Between renders the test
stores the hub Secret (and the Binder service's) in the stand-in as an install would:
what the next render reads.

A tool that renders without a cluster (Argo CD, Flux) cannot look up, so it gives every
secret in the values: those are used as given, and every Secret the chart renders is
then the same at each render.
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

from tests.integration.test_helm_chart import CHART, HEX64, find, refusal, render, secret_data
from tests.kube import ApiServer, write_kubeconfig

NAMESPACE = "hub"
SECRET = "r-egi-hub-hub"
GENERATED = ("crypt-key", "cookie-secret", "proxy-token")
BINDER = ["--set", "binder.enabled=true", "--set", "binder.build.imagePrefix=binder-env-"]
BINDER_SECRET = "r-egi-hub-binder"
BINDER_KEYS = {"api-token": "binder.apiToken", "ticket-secret": "binder.ticketSecret"}


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

    async def install(
        self, docs: list[dict[str, Any]], namespace: str = NAMESPACE, name: str = SECRET
    ) -> None:
        """Store the rendered Secret ``name`` (replacing an older one), as helm would."""
        secret = find(docs, "Secret", name)
        url = f"{self.base}/api/v1/namespaces/{namespace}/secrets"
        async with aiohttp.ClientSession() as session:
            async with session.delete(f"{url}/{name}"):
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


async def test_binder_secrets_given_in_values_are_used_and_then_kept(cluster: Cluster) -> None:
    generated = secret_data(find(await cluster.render(*BINDER), "Secret", BINDER_SECRET))
    for key in BINDER_KEYS:
        assert HEX64.match(generated[key]), key
    given = {"api-token": "t0ken-" + "a" * 30, "ticket-secret": "ticket/" + "b" * 30}
    # Given at an upgrade over generated ones: the given ones win...
    await cluster.install(await cluster.render(*BINDER), name=BINDER_SECRET)
    docs = await cluster.render(*BINDER, *_given_binder(given))
    assert {k: secret_data(find(docs, "Secret", BINDER_SECRET))[k] for k in given} == given
    # ... and an upgrade that leaves them out of the values keeps them.
    await cluster.install(docs, name=BINDER_SECRET)
    kept = secret_data(find(await cluster.render(*BINDER), "Secret", BINDER_SECRET))
    assert {k: kept[k] for k in given} == given
    assert "config.json" in kept  # the service's config beside them, never the secrets
    assert all(value not in kept["config.json"] for value in given.values())


def test_every_secret_given_renders_the_same_without_a_cluster(helm: Path) -> None:
    """GitOps (plain ``helm template``, no lookup): with every secret in the values,
    each Secret the chart renders is the same at every render, so a sync changes none."""
    hexes = iter("0123456789abcdef")
    values = [
        *BINDER,
        *("--set", "hub.checkin.clientSecret=client-secret-from-the-store"),
        *_given_binder({"api-token": "t" * 40, "ticket-secret": "s" * 40}),
    ]
    for key in ("hub.cryptKey", "hub.cookieSecret", "proxy.secretToken"):
        values += ["--set", f"{key}={next(hexes) * 64}"]
    one, two = (
        {d["metadata"]["name"]: d for d in render(helm, *values) if d["kind"] == "Secret"}
        for _ in range(2)
    )
    assert {SECRET, BINDER_SECRET} <= set(one)
    assert one == two
    assert secret_data(one[BINDER_SECRET])["api-token"] == "t" * 40
    assert secret_data(one[SECRET])["crypt-key"] == "0" * 64


@pytest.mark.parametrize("value", ["short", "a" * 31, "with space " + "a" * 32, "é" * 40])
@pytest.mark.parametrize("key", sorted(BINDER_KEYS.values()))
def test_the_schema_refuses_a_weak_or_odd_binder_secret(helm: Path, key: str, value: str) -> None:
    message = refusal(helm, *BINDER, "--set-string", f"{key}={value}")
    assert f"{key}: Does not match pattern" in message
    assert value not in message.replace(f"{key}: Does not match pattern", "")


def _given_binder(secrets: dict[str, str]) -> list[str]:
    return [w for key, value in secrets.items() for w in ("--set", f"{BINDER_KEYS[key]}={value}")]
