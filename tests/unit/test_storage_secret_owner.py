"""Whose storage Secret the hub may delete (`egi_hub.storage_mounts.kube`): a stand-in
for the Kubernetes API records the calls (the kmock tests run the whole spawner)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kubernetes_asyncio.client.rest import ApiException

from egi_hub.storage_mounts.kube import delete_own_secret, is_own_secret

OWNER = {"hub.jupyter.org/username": "alice", "hub.jupyter.org/servername": ""}
OWN = {"app.kubernetes.io/component": "egi-storage", **OWNER}


class Api:
    """Stand-in: one Secret (or none); deletes answer ``delete_status`` (None: 200)."""

    def __init__(self, labels: dict | None, delete_status: int | None = None) -> None:
        self.labels, self.delete_status = labels, delete_status
        self.deleted: list = []

    async def read_namespaced_secret(self, name, namespace):
        if self.labels is None:
            raise ApiException(status=404)
        return SimpleNamespace(metadata=SimpleNamespace(labels=self.labels, uid="uid-1"))

    async def delete_namespaced_secret(self, name, namespace, body=None):
        self.deleted.append((name, namespace, body))
        if self.delete_status is not None:
            raise ApiException(status=self.delete_status)


@pytest.mark.parametrize(
    ("labels", "own"),
    [
        (OWN, True),
        ({**OWN, "extra": "x"}, True),
        ({}, False),
        (None, False),
        (OWNER, False),  # not a storage Secret
        ({**OWN, "hub.jupyter.org/username": "bob"}, False),
        ({**OWN, "hub.jupyter.org/servername": "other"}, False),
        ({"app.kubernetes.io/component": "egi-storage"}, False),
    ],
)
def test_is_own_secret(labels, own):
    assert is_own_secret(labels, OWNER) is own


def test_without_the_servers_labels_nothing_is_own():
    assert not is_own_secret(OWN, {})


async def test_deletes_its_own_with_the_uid_it_read_as_precondition():
    api = Api(OWN)
    assert await delete_own_secret(api, "ns", "jupyter-alice.egi-storage", OWNER, 5) is True
    ((name, namespace, body),) = api.deleted
    assert (name, namespace, body.preconditions.uid) == ("jupyter-alice.egi-storage", "ns", "uid-1")


@pytest.mark.parametrize("status", [404, 409])
async def test_gone_or_made_again_meanwhile_is_not_an_error(status):
    assert await delete_own_secret(Api(OWN, status), "ns", "n", OWNER, 5) is True


async def test_someone_elses_or_none_is_never_deleted(caplog):
    foreign = Api({"hub.jupyter.org/username": "alice"})
    assert await delete_own_secret(foreign, "ns", "jupyter-alice.egi-storage", OWNER, 5) is False
    assert await delete_own_secret(Api(None), "ns", "n", OWNER, 5) is None
    assert foreign.deleted == []
    assert "not this server's storage Secret: left alone" in caplog.text


async def test_other_api_errors_are_raised():
    with pytest.raises(ApiException):
        await delete_own_secret(Api(OWN, 500), "ns", "n", OWNER, 5)


def test_storage_secret_names_hold_a_dot_no_pod_name_has():
    from egi_hub.storage_mounts.kube import check_pod_name, secret_name_for

    assert secret_name_for("jupyter-alice") == "jupyter-alice.egi-storage"
    # User "alice-storage"'s pod takes what alice's Secret was once called; no longer.
    assert secret_name_for("jupyter-alice") != "jupyter-alice-storage"
    check_pod_name("jupyter-alice")
    check_pod_name("x" * (253 - len(".egi-storage")))


@pytest.mark.parametrize("pod_name", ["jupyter.alice", "jupyter-alice.egi", "x" * 250])
def test_a_pod_name_that_cannot_name_a_storage_secret_is_refused(pod_name):
    from egi_hub.storage_mounts.kube import check_pod_name

    with pytest.raises(ValueError, match="pod_name_template"):
        check_pod_name(pod_name)
