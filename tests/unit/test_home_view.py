"""The home page's view model (egi_hub.spawner.home): one user's servers, VOs, use, hours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from egi_hub.pages import SitePages
from egi_hub.spawner.home import HomeView, resources_text, template_vars
from egi_hub.spawner.quota import Charge, QuotaPolicy

ACCESS = "vo.access.egi.eu"
NOTEBOOKS = "vo.notebooks.egi.eu"
ALICE = ["urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"]
PROFILES = [
    {"display_name": "Small", "slug": "small"},
    {"display_name": "Large GPU", "slug": "large"},
]


@pytest.fixture
def hub(tmp_path):
    """The hub's config and its one QuotaPolicy, as the hub's spawners would make it."""
    c = Config()
    c.QuotaPolicy.vo_limits = {ACCESS: {"max_servers": 3, "per_user": {"max_servers": 2}}}
    c.QuotaPolicy.default_limits = {"max_servers": 0}
    c.QuotaPolicy.usage_log = str(tmp_path / "usage.jsonl")
    QuotaPolicy.clear_instance()
    SitePages.clear_instance()
    yield c
    QuotaPolicy.clear_instance()
    SitePages.clear_instance()


def user(name: str, user_id: int, config: Config, servers: dict[str, bool]):
    """A stand-in for JupyterHub's User: name, orm id, spawner objects, server URLs."""
    spawners = {
        server: SimpleNamespace(pending=None, ready=ready, profile_list=PROFILES, config=config)
        for server, ready in servers.items()
    }
    default = spawners.get("") or SimpleNamespace(profile_list=PROFILES, config=config)
    return SimpleNamespace(
        name=name,
        orm_user=SimpleNamespace(id=user_id),
        spawners=spawners,
        spawner=default,
        server_url=lambda server: f"/user/{name}/{server}",
    )


def write_log(path: str, records: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in records))


def orm(name: str, user_id: int, running: bool = True, options=None):
    return SimpleNamespace(
        name=name, user_id=user_id, server=object() if running else None, user_options=options
    )


async def test_the_view_is_the_users_own(hub):
    policy = QuotaPolicy.instance(config=hub)
    started = datetime.now(UTC) - timedelta(hours=2)
    alice_charge = Charge("alice", "", ACCESS, cpu=1, memory=2**30, profile="small")
    policy.admit(alice_charge)
    policy.started(alice_charge, since=started.isoformat())
    policy.admit(Charge("alice", "gpu", NOTEBOOKS, cpu=4, gpu=1, profile="large"), admin=True)
    policy.admit(Charge("bob", "", ACCESS, cpu=2, profile="small"))
    stop = {"event": "stop", "user": "bob", "server": "", "vo": NOTEBOOKS, "profile": "large"}
    stop |= {"start": (started - timedelta(hours=9)).isoformat(), "stop": started.isoformat()}
    start = {"event": "start", "user": "alice", "server": "", "vo": ACCESS, "profile": "small"}
    start |= {"start": started.isoformat(), "stop": None}
    write_log(hub.QuotaPolicy.usage_log, [stop, start])

    alice = user("alice", 1, hub, {"": True, "gpu": True})
    # A spawner row of another user (never handed over by JupyterHub) is ignored.
    spawners = [orm("gpu", 1), orm("", 1), orm("old", 1, running=False), orm("x", 2)]
    model = await template_vars(Config())["egi_home"].view(alice, {"entitlements": ALICE}, spawners)

    assert [(s.label, s.profile, s.vo, s.resources) for s in model.servers] == [
        ("default server", "Small", ACCESS, "1 CPU, 1 GiB memory"),
        ("gpu", "Large GPU", NOTEBOOKS, "4 CPUs, 1 GPU"),
    ]
    assert [(v.name, v.member, v.left) for v in model.vos] == [
        (ACCESS, True, False),
        (NOTEBOOKS, False, True),
    ]
    access = model.vos[0]
    # The VO's use counts bob's server too (a total); "you" is alice's own.
    assert access.use.text == f"{ACCESS}: 2 of 3 servers; you: 1 of 2 servers"
    assert access.hours == pytest.approx(2.0, abs=0.05)
    assert model.vos[1].hours == 0  # bob's 9 hours there are not alice's
    assert not model.in_no_vo


async def test_a_user_in_no_vo_gets_the_enrolment_link(hub):
    carol = user("carol", 3, hub, {})
    model = await HomeView().view(carol, None, [])
    assert model.servers == () and model.vos == ()
    assert model.in_no_vo
    assert model.enrolment_url == SitePages.instance(config=hub).default_enrolment_url


async def test_a_server_not_admitted_yet(hub):
    dave = user("dave", 4, hub, {"": False})
    dave.spawners[""].pending = "spawn"
    model = await HomeView().view(
        dave, None, [orm("", 4, running=False, options={"profile": "large"})]
    )
    (server,) = model.servers
    assert (server.status, server.profile, server.vo, server.resources) == (
        "starting",
        "Large GPU",
        "",
        "",
    )


def test_resources_text():
    assert resources_text(0.5, 512 * 2**20, 2) == "0.5 CPUs, 0.5 GiB memory, 2 GPUs"
    assert resources_text(0, 0, 0) == "no limits set"
