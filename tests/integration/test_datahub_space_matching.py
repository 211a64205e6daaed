"""A mount's ``spaces`` filter against lookalike spaces, on the Onedata stand-in.

Stand-in tests: Onedata cannot run here; `tests/onedata_standin.py` follows its
documented REST API (user spaces, temporary tokens with ``data.path``/``service``
caveats it enforces, scope discovery, a second Oneprovider). Space names are chosen by
any Onedata user, so an attacker creates a space named after the real space's id, or a
second space with the real one's name, supported by a provider of theirs, and gets the
victim to join it. The hub's token narrowing, the notebook's ``datahub://`` and the
Kubernetes sidecar's provider must all mean the real space only (`egi_hub.spaces`).
"""

from __future__ import annotations

import base64
import errno

import httpx
import pytest

from egi_hub.singleuser.datahub import DatahubFileSystem
from egi_hub.spaces import AmbiguousSpaceName
from egi_hub.storage_mounts.datahub_tokens import DatahubCredentialError, DatahubTokens
from egi_hub.storage_mounts.kube import choose_provider
from tests.onedata_standin import start_onedata_standin

VICTIM = "checkin-at-victim-31c9"
ATTACKER = "checkin-at-attacker-8d02"


@pytest.fixture
def standin(tmp_path):
    onedata = start_onedata_standin(tmp_path)
    onedata.add_user(VICTIM, "uid-victim", "Victim")
    onedata.add_user(ATTACKER, "uid-attacker", "Attacker")
    yield onedata
    onedata.stop()
    assert onedata.state.errors == []


@pytest.fixture
async def tokens(standin):
    made = DatahubTokens(
        standin.onezone_url, ca_file=standin.ca_file, token_lifetime=3600, renew_before=300
    )
    yield made
    await made.aclose()


@pytest.fixture
def world(standin):
    """The victim's real ``project`` and ``other`` (at the stand-in's provider) and the
    attacker's running provider ``Evil``; `lookalike` adds the attacker's spaces."""
    evil_id, evil_url = standin.start_provider("Evil")
    real = standin.add_space("project", ["uid-victim"])
    other = standin.add_space("other", ["uid-victim"])
    standin.write_file(real, "f.txt", b"real data")

    def lookalike(name: str) -> str:
        """A space of the attacker's named ``name``, supported only by Evil, that the
        victim has joined."""
        space_id = standin.add_space(name, ["uid-attacker", "uid-victim"])
        with standin.state.lock:
            standin.state.spaces[space_id].supports = {evil_id: False}
        standin.write_file(space_id, "f.txt", b"attacker data")
        return space_id

    return {"real": real, "other": other, "evil_id": evil_id, "evil_url": evil_url,
            "lookalike": lookalike}  # fmt: skip


def path_entry(space_id: str) -> str:
    return base64.b64encode(f"/{space_id}".encode()).decode()


def caveat(standin, token: str, kind: str) -> list[str]:
    return next(c["whitelist"] for c in standin.state.tokens[token].caveats if c["type"] == kind)


def minted(standin) -> int:
    return len([p for _, p, _ in standin.requests() if p.endswith("/tokens/temporary")])


# --- finding 1: a space named after the real space's id --------------------------------


async def test_standin_hub_token_never_reaches_a_space_named_after_the_real_id(
    standin, tokens, world
):
    real, other = world["real"], world["other"]
    spoof = world["lookalike"](real)  # named after the real space's id
    creds = await tokens.credentials("victim", VICTIM, "rest", False, spaces=[real, "other"])
    token = creds.token.token
    assert sorted(caveat(standin, token, "data.path")) == sorted(
        [path_entry(real), path_entry(other)]
    )
    assert caveat(standin, token, "service") == [f"opw-{standin.provider_id}"]
    assert {s.space_id for s in creds.scope.spaces} == {real, other}
    # The attacker's provider refuses the token: it cannot be handed it, nor replay it.
    async with httpx.AsyncClient(verify=standin.client_tls(), timeout=10) as client:
        refused = await client.get(
            f"{world['evil_url']}/api/v3/oneprovider/data/{spoof}/children",
            headers={"X-Auth-Token": token},
        )
    assert refused.status_code == 401
    assert refused.json()["error"]["details"]["authError"]["details"]["caveat"]["type"] == (
        "service"
    )


async def test_standin_hub_name_at_id_means_that_pair_not_a_space_named_so(standin, tokens, world):
    real = world["real"]
    world["lookalike"](f"project@{real}")
    token = await tokens.token("victim", VICTIM, "rest", False, spaces=[f"project@{real}"])
    assert caveat(standin, token.token, "data.path") == [path_entry(real)]
    assert caveat(standin, token.token, "service") == [f"opw-{standin.provider_id}"]


def test_standin_notebook_never_shows_a_space_named_after_the_real_id(standin, world):
    real = world["real"]
    spoof = world["lookalike"](real)
    fs = DatahubFileSystem(
        onezone_url=standin.onezone_url,
        token=standin.mint_token("uid-victim"),
        verify=standin.ca_file,
        skip_instance_cache=True,
        spaces=[real, "other"],
    )  # fmt: skip  (an unnarrowed token: the notebook's own filter must hold)
    assert sorted(fs.ls("", detail=False)) == ["other", "project"]
    assert fs.cat_file("project/f.txt") == b"real data"
    for spec in (real, f"{real}@{spoof}", spoof):
        with pytest.raises(FileNotFoundError):
            fs.ls(spec)
    sent = [p for _, p, _ in standin.requests() if spoof in p]
    assert sent == []  # nothing about the spoof was ever asked of a provider


async def test_standin_sidecar_never_picks_the_spoofs_provider(standin, tokens, world):
    real = world["real"]
    world["lookalike"](real)
    with standin.state.lock:  # the attacker's domain sorts first
        standin.state.providers[world["evil_id"]]["domain"] = "a.evil.example"
    # an unnarrowed token's scope holds the spoof too: the sidecar's filter must hold
    creds = await tokens.credentials("victim", VICTIM, "oneclient", False)
    assert len(creds.scope.spaces) == 3
    assert choose_provider(creds.scope, [real]) == (standin.provider_host, [real])
    assert choose_provider(creds.scope, [real, "other"]) == (
        standin.provider_host,
        sorted([real, world["other"]], key=[s.space_id for s in creds.scope.spaces].index),
    )


# --- finding 2: a second space with the real one's name --------------------------------


async def test_standin_hub_refuses_a_name_two_spaces_carry(standin, tokens, world):
    real = world["real"]
    twin = world["lookalike"]("project")
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("victim", VICTIM, "oneclient", False, spaces=["project"])
    assert info.value.kind == "refused"
    assert "several of your spaces are named 'project'" in info.value.reason
    assert "by its id or as name@id" in info.value.reason
    assert minted(standin) == 0  # no token was issued at all
    for spec in (real, f"project@{real}"):
        token = await tokens.token("victim", VICTIM, "oneclient", False, spaces=[spec])
        assert caveat(standin, token.token, "data.path") == [path_entry(real)]
        assert caveat(standin, token.token, "service") == [f"opw-{standin.provider_id}"]
    token = await tokens.token("victim", VICTIM, "rest", False, spaces=[f"project@{twin}"])
    assert caveat(standin, token.token, "service") == [f"opw-{world['evil_id']}"]  # asked for


async def test_standin_sidecar_refuses_a_name_two_spaces_carry(standin, tokens, world):
    real = world["real"]
    world["lookalike"]("project")
    with standin.state.lock:
        standin.state.providers[world["evil_id"]]["domain"] = "a.evil.example"
    creds = await tokens.credentials("victim", VICTIM, "oneclient", False)
    with pytest.raises(AmbiguousSpaceName, match="named 'project'"):
        choose_provider(creds.scope, ["project"])
    assert choose_provider(creds.scope, [f"project@{real}"]) == (standin.provider_host, [real])


def test_standin_notebook_shows_neither_of_two_spaces_with_the_filters_name(standin, world):
    """Picked and documented: a bare name several spaces carry shows none of them (the
    rest of the filter still shows), and a path into it says to write the id."""
    real = world["real"]
    twin = world["lookalike"]("project")
    fs = DatahubFileSystem(
        onezone_url=standin.onezone_url, token=standin.mint_token("uid-victim"),
        verify=standin.ca_file, skip_instance_cache=True, spaces=["project", "other"],
    )  # fmt: skip
    assert fs.ls("", detail=False) == ["other"]
    for spec in ("project", f"project@{real}", f"project@{twin}"):
        with pytest.raises(FileNotFoundError, match="several of your spaces are named") as e:
            fs.cat_file(f"{spec}/f.txt")
        assert e.value.errno == errno.ENOENT
        assert "by id or as <name>@<spaceId>" in str(e.value)
    with pytest.raises(FileNotFoundError):
        fs.pipe_file("project/new.txt", b"x")
    assert not standin.exists(real, "new.txt") and not standin.exists(twin, "new.txt")
    by_pair = DatahubFileSystem(
        onezone_url=standin.onezone_url, token=standin.mint_token("uid-victim"),
        verify=standin.ca_file, skip_instance_cache=True, spaces=[f"project@{real}"],
    )  # fmt: skip
    assert by_pair.ls("", detail=False) == ["project"]
    assert by_pair.cat_file("project/f.txt") == b"real data"


# --- unchanged: ids only, and names when unique ------------------------------------------


async def test_standin_ids_only_and_unique_names_still_work(standin, tokens, world):
    real, other = world["real"], world["other"]
    by_ids = await tokens.credentials("victim", VICTIM, "oneclient", False, spaces=[real, other])
    by_names = await tokens.credentials(
        "victim", VICTIM, "rest", False, spaces=["project", "other"]
    )
    for creds in (by_ids, by_names):
        assert sorted(caveat(standin, creds.token.token, "data.path")) == sorted(
            [path_entry(real), path_entry(other)]
        )
        host, ids = choose_provider(creds.scope, ["project", "other"])
        assert host == standin.provider_host and sorted(ids) == sorted([real, other])
    fs = DatahubFileSystem(
        onezone_url=standin.onezone_url, token=by_names.token.token, verify=standin.ca_file,
        skip_instance_cache=True, spaces=["project"],
    )  # fmt: skip
    assert fs.ls("", detail=False) == ["project"]
    assert fs.cat_file("project/f.txt") == b"real data"
