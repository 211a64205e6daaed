"""A Binder session on EGIKubeSpawner with the chart's users' homes
(``singleuser.storage``): no home volume over the repository the image holds, no claim
made for the session; the next normal start has its home again."""

from __future__ import annotations

from typing import Any

from egi_hub.helm.singleuser import site_settings
from tests.unit.test_binder_kube_launch import (  # noqa: F401  (no_kubeconfig: autouse)
    NEW,
    OLD,
    launch,
    no_kubeconfig,
    notebook,
    pod_of,
    spawner,
    ticket,
)
from tests.unit.test_helm_home import storage


def chart_traits(**changes: Any) -> dict[str, Any]:
    return site_settings({"storage": storage(**changes)})[0]["KubeSpawner"]


def claims(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v]  # fmt: skip


async def test_a_binder_session_has_no_home_volume_and_no_claim() -> None:
    s = spawner(**chart_traits())
    home = await pod_of(s, {})
    assert s.storage_pvc_ensure is True
    assert claims(home) == [s.pvc_name]
    session = await pod_of(s, ticket(launch(NEW, OLD)))
    assert claims(session) == []
    assert s.storage_pvc_ensure is False
    paths = [m["mountPath"] for m in notebook(session)["volumeMounts"]]
    assert "/home/jovyan" not in paths and "/srv/egi-binder" in paths  # the content's stays
    again = await pod_of(s, {})  # a normal start after it: the home is back
    assert again == home and s.storage_pvc_ensure is True


async def test_a_home_elsewhere_and_extra_volumes_stay_in_a_session() -> None:
    extra = {"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}
    traits = chart_traits(
        homeMountPath="/home/jovyan/work",
        extraVolumes={"data": extra},
        extraVolumeMounts={"data": {"name": "data", "mountPath": "/data"}},
    )
    s = spawner(**traits)
    session = await pod_of(s, ticket(launch(OLD, OLD)))
    assert claims(session) == [s.pvc_name, "datasets"]  # /home/jovyan/work hides nothing
    # a static claim mounted at /home (above the repository) goes, its extras stay
    traits = chart_traits(type="static", static__pvcName="homes", homeMountPath="/home",
                          extraVolumes=[extra],
                          extraVolumeMounts=[{"name": "data", "mountPath": "/data"}])  # fmt: skip
    s = spawner(**traits)
    session = await pod_of(s, ticket(launch(OLD, OLD)))
    assert claims(session) == ["datasets"]
