"""EGIKubeSpawner against kmock, a Kubernetes API emulator (a stand-in: no cluster runs
here; tests.kube adds what an API server and a kubelet would), and every pod manifest
checked with kubernetes-validate --strict (1.29 and 1.33)."""

from __future__ import annotations

import asyncio
import json
import re

import kubernetes_validate
import pytest
from jupyterhub.objects import Hub, Server
from kmock import Response
from kubernetes_asyncio.client import ApiClient
from tornado import web

from egi_hub.context import UserContext
from egi_hub.spawner.kube import EGIKubeSpawner
from egi_hub.spawner.profiles import option_overrides
from egi_hub.spawner.quota import QuotaExceededError, QuotaPolicy
from tests.kube import kubernetes

NOTEBOOKS = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
IMAGE = "quay.io/jupyterhub/singleuser:5"
PROFILES = [
    {
        "display_name": "Small",
        "slug": "small",
        "default": True,
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
    },
    {
        "display_name": "GPU",
        "slug": "gpu",
        "allowed_vos": ["vo.notebooks.egi.eu"],
        "vo": "vo.notebooks.egi.eu",
        "kubespawner_override": {
            "cpu_limit": 2,
            "mem_limit": "2G",
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
        },
    },
]


class HubUser:
    """What the spawner sees of a hub user (stand-in for jupyterhub.user.User)."""

    def __init__(self, name: str, entitlements: list[str]) -> None:
        self.name = name
        self.id = 1
        self.url = f"/user/{name}/"
        self.admin = False
        self.escaped_name = name
        self._auth_state = UserContext.from_entitlements(name, entitlements).to_auth_state()

    async def get_auth_state(self) -> dict:
        return self._auth_state


def spawner(
    name: str,
    options: dict,
    entitlements: tuple[str, ...] = (NOTEBOOKS,),
    profile_list: list | None = None,
    **traits,
) -> EGIKubeSpawner:
    s = EGIKubeSpawner(
        user=HubUser(name, list(entitlements)),
        hub=Hub(),
        namespace="default",
        profile_list=PROFILES if profile_list is None else profile_list,
        start_timeout=30,
        image=IMAGE,
        _mock=True,
        **traits,
    )
    s.api_token = "not-a-secret"
    s.server = Server()
    s.user_options = options
    return s


def pods(api) -> list:
    """The pods that exist now (kmock keeps a deleted object's history)."""
    return [o for (r, _, _), o in api.objects.items() if r.plural == "pods" and not o.deleted]


def only_pod(api):
    (pod,) = pods(api)
    return pod


def limits_of(pod) -> dict:
    return pod["spec"]["containers"][0]["resources"].get("limits", {})


async def start(s: EGIKubeSpawner) -> None:
    await s.start()
    s.server.ip, s.server.port = "127.0.0.1", s.port


def charged(s: EGIKubeSpawner):
    return QuotaPolicy.instance().charge_of(s.user.name, s.name)


@pytest.fixture(autouse=True)
def fresh_policy():
    QuotaPolicy.clear_instance()
    yield
    QuotaPolicy.clear_instance()


async def test_lifecycle_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        s = spawner("alice", {"profile": "gpu"}, storage_pvc_ensure=True, storage_capacity="1Gi")
        url = await s.start()
        assert url.startswith("http://127.0.0.1:")
        s.server.ip, s.server.port = "127.0.0.1", s.port
        assert await s.poll() is None
        pods = [o for (r, ns, n), o in api.objects.items() if r.plural == "pods"]
        (pod,) = pods
        container = pod["spec"]["containers"][0]
        assert container["resources"]["limits"] == {
            "cpu": 2.0,
            "memory": 2 * 2**30,
            "nvidia.com/gpu": "1",
        }
        (pvc,) = [o for (r, _, _), o in api.objects.items() if r.plural == "persistentvolumeclaims"]
        assert pvc["spec"]["resources"]["requests"] == {"storage": "1Gi"}
        assert pvc["metadata"]["labels"]["hub.jupyter.org/username"] == "alice"
        for manifest in (pod, pvc):
            for version in ("1.29.0", "1.33.0"):
                stored = json.loads(json.dumps(manifest.raw))  # as the API server keeps it
                clean = {k: v for k, v in stored.items() if k != "status"}
                kubernetes_validate.validate(clean, version, strict=True)
        labels = pod["metadata"]["labels"]
        assert labels["egi.eu/vo"] == "vo.notebooks.egi.eu"
        assert labels["egi.eu/profile"] == "gpu"
        assert labels["hub.jupyter.org/username"] == "alice"
        usage = QuotaPolicy.instance().usage("vo.notebooks.egi.eu")
        assert (usage.servers, usage.gpu) == (1, 1)
        await s.stop()
        assert QuotaPolicy.instance().usage("vo.notebooks.egi.eu").servers == 0


async def test_forged_profile_is_refused_before_any_pod_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        s = spawner("bob", {"profile": "gpu"})
        s.user = HubUser("bob", [])  # in no VO: the GPU profile is not his
        with pytest.raises(Exception, match=r"The profile 'GPU' needs membership of vo\.notebooks"):
            await s.start()
        assert not [o for (r, _, _), o in api.objects.items() if r.plural == "pods"]


async def test_exceeded_resource_quota_is_a_clear_refusal_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        refusal = {
            "kind": "Status",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": 'pods "jupyter-carol" is forbidden: exceeded quota: vo-quota, '
            "requested: limits.memory=1G, used: limits.memory=40G, limited: limits.memory=40G",
        }
        api["post /api/v1/namespaces/default/pods"] << Response(status=403, payload=refusal)
        s = spawner("carol", {"profile": "small"})
        with pytest.raises(QuotaExceededError) as info:
            await s.start()
        assert info.value.jupyterhub_message.startswith(
            "The cluster's quota for namespace default has no room for this server "
            '(Kubernetes says: pods "jupyter-carol" is forbidden: exceeded quota: vo-quota'
        )
        home = f'<a href="{s.hub.base_url}home">Stop a server on your home page'
        assert home in info.value.jupyterhub_html_message
        assert QuotaPolicy.instance().usage("vo.notebooks.egi.eu").servers == 0


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
@pytest.mark.parametrize("name", ["alice", "jörg@egi.eu", "Zoë.Ünicode+" + "x" * 188])
async def test_pod_manifests_are_valid_kubernetes(name, version):
    s = spawner(name, {"profile": "gpu"})
    await s.load_user_options()
    pod = ApiClient().sanitize_for_serialization(await s.get_pod_manifest())
    kubernetes_validate.validate(pod, version, strict=True)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", pod["metadata"]["name"])
    assert len(pod["metadata"]["name"]) <= 63


# The reproduction of issue 7 (item 12): the GPU profile is first and default, but only
# vo.notebooks.egi.eu may use it.
GPU_FIRST = [
    {
        "display_name": "GPU",
        "slug": "gpu",
        "default": True,
        "allowed_vos": ["vo.notebooks.egi.eu"],
        "vo": "vo.notebooks.egi.eu",
        "kubespawner_override": {
            "cpu_limit": 8,
            "mem_limit": "32G",
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
            "image": "quay.io/jupyter/pytorch-notebook:cuda12-latest",
        },
    },
    {
        "display_name": "Small",
        "slug": "small",
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
    },
]


def assert_charge_is_the_pod(s: EGIKubeSpawner, pod, profile: str) -> None:
    """What the quota holds is what the pod got, under the profile it is labelled with."""
    charge = charged(s)
    limits = limits_of(pod)
    assert charge.cpu == float(limits.get("cpu", 0))
    assert charge.memory == int(limits.get("memory", 0))
    assert charge.gpu == int(limits.get("nvidia.com/gpu", 0))
    assert charge.profile == profile
    assert pod["metadata"]["labels"]["egi.eu/profile"] == profile


async def test_spawn_without_options_gets_the_first_profile_the_user_may_have_kmock_emulator(
    tmp_path,
):
    """No profile marked default, no options at all: the first *allowed* profile.

    Before the fix, KubeSpawner applied the first profile of the whole list (GPU).
    """
    unmarked = [{k: v for k, v in p.items() if k != "default"} for p in GPU_FIRST]
    async with kubernetes(tmp_path) as api:
        s = spawner("dora", {}, entitlements=(ACCESS,), profile_list=unmarked)
        await start(s)
        pod = only_pod(api)
        assert limits_of(pod) == {"cpu": 1.0, "memory": 2**30}
        assert pod["spec"]["containers"][0]["image"] == IMAGE
        assert_charge_is_the_pod(s, pod, "small")
        assert charged(s).vo == "vo.access.egi.eu"
        await s.stop()


async def test_default_profile_the_user_may_not_have_is_not_applied_kmock_emulator(tmp_path):
    """GPU first and default, restricted to another VO: a vo.access user starting with
    ``user_options={}`` gets the allowed default, and is charged what the pod got.

    Before the fix: a pod with 8 CPUs, 32G and a GPU, labelled and charged as "small".
    """
    async with kubernetes(tmp_path) as api:
        s = spawner("erin", {}, entitlements=(ACCESS,), profile_list=GPU_FIRST)
        await start(s)
        pod = only_pod(api)
        assert "nvidia.com/gpu" not in limits_of(pod)
        assert limits_of(pod) == {"cpu": 1.0, "memory": 2**30}
        assert pod["spec"]["containers"][0]["image"] == IMAGE
        assert_charge_is_the_pod(s, pod, "small")
        usage = QuotaPolicy.instance().usage("vo.access.egi.eu")
        assert (usage.servers, usage.cpu, usage.gpu) == (1, 1.0, 0)
        assert QuotaPolicy.instance().usage("vo.notebooks.egi.eu").servers == 0
        await s.stop()


OPTIONS = [
    {
        "display_name": "Small",
        "slug": "small",
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "minimal": {"display_name": "Minimal", "default": True},
                    "scipy": {
                        "display_name": "SciPy",
                        "kubespawner_override": {"image": "quay.io/jupyter/scipy-notebook:2024"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Image name",
                    "validation_regex": "^quay\\.io/jupyter/",
                    "kubespawner_override": {"image": "{value}"},
                },
            },
            "size": {
                "display_name": "Size",
                "choices": {
                    "one": {"display_name": "1 CPU"},
                    "two": {"display_name": "2 CPUs", "kubespawner_override": {"cpu_limit": 2}},
                },
            },
        },
    },
    {
        "display_name": "GPU",
        "slug": "gpu",
        "allowed_vos": ["vo.notebooks.egi.eu"],
        "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "1"}},
    },
]


async def test_form_offers_the_allowed_profiles_and_their_options_kmock_emulator(tmp_path):
    """The same profile cards as the local spawner, with KubeSpawner's field names, for
    the profiles the user's VOs allow only: where each is charged, and the VO's use."""
    QuotaPolicy.instance().vo_limits = {"vo.access.egi.eu": {"max_servers": 3}}
    async with kubernetes(tmp_path):
        s = spawner("fred", {}, entitlements=(ACCESS,), profile_list=OPTIONS)
        form = await s.get_options_form()
    assert 'class="egi-profiles"' in form and "kubespawner-profiles-list" not in form
    assert 'value="small"' in form and 'value="gpu"' not in form
    assert 'name="profile-option-small--image"' in form
    assert 'value="scipy"' in form
    assert 'egi-profile-vo">vo.access.egi.eu<' in form
    assert "vo.access.egi.eu: 0 of 3 servers" in form
    # KubeSpawner's own reading of the form gives what ours gives.
    data = {"profile": ["small"], "profile-option-small--image": ["scipy"]}
    assert s._options_from_form(data) == s.options_from_form(data)
    # "Other…" chosen, with its text: the same fields and values as KubeSpawner's form.
    assert 'value="unlisted-choice"' in form
    data["profile-option-small--image"] = ["unlisted-choice"]
    data["profile-option-small--image--unlisted-choice"] = ["quay.io/jupyter/r-notebook"]
    assert s._options_from_form(data) == s.options_from_form(data)
    # Another entry chosen: KubeSpawner's form does not send the text (its script
    # removes the field's name); ours drops it on the hub too.
    data["profile-option-small--image"] = ["scipy"]
    assert s.options_from_form(data) == {"profile": "small", "image": "scipy"}


@pytest.mark.parametrize(
    "options, image",
    [
        ({"image": "unlisted-choice", "image--unlisted-choice": "quay.io/jupyter/r"}, "r"),
        # An API caller sending both: a non-empty free value wins, in KubeSpawner and ours.
        ({"image": "scipy", "image--unlisted-choice": "quay.io/jupyter/r"}, "r"),
        ({"image": "scipy", "image--unlisted-choice": ""}, "scipy"),
    ],
)
async def test_free_values_follow_kubespawners_rule_kmock_emulator(tmp_path, options, image):
    """What KubeSpawner applies is what option_overrides (the local spawner's, and the
    400 check before any pod) says."""
    expected = {"r": "quay.io/jupyter/r", "scipy": "quay.io/jupyter/scipy-notebook:2024"}[image]
    assert option_overrides(OPTIONS[0], options)[0] == {"image": expected}
    async with kubernetes(tmp_path) as api:
        s = spawner("ivy", {"profile": "small", **options}, profile_list=OPTIONS)
        await start(s)
        assert only_pod(api)["spec"]["containers"][0]["image"] == expected
        await s.stop()


async def test_other_without_a_value_is_a_400_before_any_pod_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        s = spawner("jo", {"profile": "small", "image": "unlisted-choice"}, profile_list=OPTIONS)
        with pytest.raises(web.HTTPError) as info:
            await s.start()
        assert info.value.status_code == 400
        assert "enter a value for 'Image name'" in str(info.value)
        assert not pods(api)


async def test_progress_is_the_admission_then_kubespawners_events_kmock_emulator(tmp_path):
    """Our admission event comes first, while the pod is being made; KubeSpawner's own
    events about the pod follow (as many as the emulator's API gives)."""
    async with kubernetes(tmp_path):
        s = spawner("jane", {"profile": "gpu"})
        starting = asyncio.ensure_future(start(s))
        events = [event async for event in s.progress()]
        await starting
        assert events[0] == {
            "progress": 20,
            "message": "Admitted: profile GPU (2 CPUs, 2 GiB of memory, 1 GPU), charged to "
            "vo.notebooks.egi.eu. vo.notebooks.egi.eu: no limits.",
        }
        assert all("Admitted" not in e["message"] for e in events[1:])
        await s.stop()


async def test_profile_option_chosen_in_the_form_reaches_the_pod_kmock_emulator(tmp_path):
    """``profile-option-<slug>--<option>`` fields become user_options, KubeSpawner applies
    the choices, and the quota charges the option's CPUs. Before the fix, the form's
    options were dropped: the default image and 1 CPU."""
    async with kubernetes(tmp_path) as api:
        s = spawner("gina", {}, entitlements=(ACCESS,), profile_list=OPTIONS)
        s.user_options = s.options_from_form(
            {
                "profile": ["small"],
                "profile-option-small--image": ["scipy"],
                "profile-option-small--size": ["two"],
                "profile-option-gpu--whatever": ["x"],  # another profile's field: ignored
            }
        )
        assert s.user_options == {"profile": "small", "image": "scipy", "size": "two"}
        await start(s)
        pod = only_pod(api)
        assert pod["spec"]["containers"][0]["image"] == "quay.io/jupyter/scipy-notebook:2024"
        assert limits_of(pod) == {"cpu": 2.0, "memory": 2**30}
        assert_charge_is_the_pod(s, pod, "small")
        stored = json.loads(json.dumps(pod.raw))
        kubernetes_validate.validate(
            {k: v for k, v in stored.items() if k != "status"}, "1.33.0", strict=True
        )
        await s.stop()


async def test_a_choice_the_option_does_not_offer_is_a_400_before_any_pod_kmock_emulator(
    tmp_path,
):
    async with kubernetes(tmp_path) as api:
        s = spawner("hana", {"profile": "small", "image": "evil:latest"}, profile_list=OPTIONS)
        with pytest.raises(web.HTTPError) as info:
            await s.start()
        assert info.value.status_code == 400
        assert "has no choice 'evil:latest' (choices: minimal, scipy)" in str(info.value)
        assert not pods(api)
        assert charged(s) is None


RESTART = [
    {
        "display_name": "Big",
        "slug": "big",
        "kubespawner_override": {
            "cpu_limit": 4,
            "mem_limit": "8G",
            "cmd": ["start-big.sh"],
            "image": "quay.io/jupyter/pytorch-notebook:cuda12-latest",
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
            "environment": {"BIG": "yes"},
            "node_selector": {"gpu": "a100"},
        },
    },
    {
        "display_name": "Small",
        "slug": "small",
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
    },
]
RESET = ["cpu_limit", "mem_limit", "cmd", "image", "extra_resource_limits", "environment"]


async def test_restart_with_another_profile_keeps_nothing_of_the_first_kmock_emulator(tmp_path):
    """One spawner object started with "big", stopped, started with "small". Before the
    fix, the GPU, command, image, environment and node selector of "big" stayed on the
    spawner and went into the second pod. (JupyterHub 6 usually makes a new spawner
    after a clean stop; the spawner must not depend on that.)"""
    fresh = spawner("ivan", {}, profile_list=RESTART)
    before = {name: getattr(fresh, name) for name in [*RESET, "node_selector"]}
    async with kubernetes(tmp_path) as api:
        s = spawner("ivan", {"profile": "big"}, profile_list=RESTART)
        await start(s)
        first = only_pod(api)
        assert limits_of(first)["nvidia.com/gpu"] == "1"
        assert first["spec"]["nodeSelector"] == {"gpu": "a100"}
        await s.stop()
        assert pods(api) == []
        s.clear_state()
        s.user_options = {"profile": "small"}
        await start(s)
        second = only_pod(api)
        container = second["spec"]["containers"][0]
        assert limits_of(second) == {"cpu": 1.0, "memory": 2**30}
        assert container["image"] == IMAGE
        assert "start-big.sh" not in json.dumps(container)
        assert not any(e["name"] == "BIG" for e in container.get("env", []))
        assert "nodeSelector" not in second["spec"]
        assert_charge_is_the_pod(s, second, "small")
        assert {name: getattr(s, name) for name in RESET} == {
            **{name: before[name] for name in RESET},
            "cpu_limit": 1.0,
            "mem_limit": 2**30,
        }
        assert s.node_selector == before["node_selector"]
        await s.stop()
