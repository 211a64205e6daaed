"""The one spaces-filter rule (egi_hub.spaces), and `choose_provider` built on it.

Review findings: a space named after another space's id slipped through a filter that
mixed ids and names; a second space carrying a filter's name steered the oneclient
sidecar to its provider; ``name@id`` matched nothing in the sidecar. Each item now
matches by one rule only, and the hub, the notebook and the sidecar share it.
"""

from __future__ import annotations

import pytest

from egi_hub.spaces import AmbiguousSpaceName, match_spaces, split_pair
from egi_hub.storage_mounts.datahub_tokens import DatahubScope, DatahubSpace, DatahubSupport
from egi_hub.storage_mounts.kube import choose_provider

REAL = "0f3a9c1e5b7d4e2a8c6b1d9f0e7a3c5b"  # a Onedata-like 32-hex space id
OTHER = "1a2b3c4d5e6f708192a3b4c5d6e7f809"
SPOOF = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
TWIN = "aaaabbbbccccddddeeeeffff00001111"


def test_an_id_matches_that_space_only_not_a_space_named_after_it():
    spaces = {REAL: "project", OTHER: "other", SPOOF: REAL}
    assert match_spaces([REAL, "other"], spaces) == [REAL, OTHER]
    assert match_spaces([REAL], spaces) == [REAL]
    # The spoof is reachable only by its own id, or as name@id with its own id.
    assert match_spaces([SPOOF], spaces) == [SPOOF]
    assert match_spaces([f"{REAL}@{SPOOF}"], spaces) == [SPOOF]


def test_name_at_id_matches_that_exact_pair_only():
    spaces = {REAL: "project", OTHER: "other", SPOOF: f"project@{REAL}"}
    assert match_spaces([f"project@{REAL}"], spaces) == [REAL]  # never the spoof by name
    assert match_spaces([f"other@{REAL}"], spaces) == []  # wrong name for that id
    assert match_spaces([f"project@{TWIN}"], spaces) == []  # not one of the user's ids
    # a name with '@' in it is split at the last '@'
    assert match_spaces([f"a@b@{TWIN}"], {TWIN: "a@b"}) == [TWIN]
    assert split_pair("a@b@c") == ("a@b", "c")
    assert split_pair("@x") is None and split_pair("x@") is None and split_pair("x") is None


def test_a_name_carried_by_two_spaces_is_ambiguous():
    spaces = {REAL: "project", TWIN: "project", OTHER: "other"}
    with pytest.raises(AmbiguousSpaceName) as info:
        match_spaces(["other", "project"], spaces)
    assert info.value.name == "project"
    assert info.value.space_ids == tuple(sorted([REAL, TWIN]))
    assert "several of your spaces are named 'project'" in str(info.value)
    assert "by its id or as name@id" in str(info.value)
    # by id or name@id the real one is meant, and only it
    assert match_spaces([REAL], spaces) == [REAL]
    assert match_spaces([f"project@{REAL}", "other"], spaces) == [REAL, OTHER]


def test_unique_names_unknown_names_and_unnamed_spaces():
    spaces = {REAL: "project", OTHER: None}  # OTHER's name unknown: by id only
    assert match_spaces(["project"], spaces) == [REAL]
    assert match_spaces(["nope", "project", "project"], spaces) == [REAL]
    assert match_spaces([OTHER], spaces) == [OTHER]
    assert match_spaces(["None"], spaces) == []
    assert match_spaces([], spaces) == []


# --- the oneclient sidecar's provider --------------------------------------------------


def support(provider_id: str, domain: str, read_only: bool = False) -> DatahubSupport:
    return DatahubSupport(provider_id, domain, domain, "21.02.5", read_only)


REAL_P = support("prov-real", "real.example.org")
EVIL_P = support("prov-evil", "a.evil.example")


def scope(*spaces: DatahubSpace) -> DatahubScope:
    return DatahubScope(None, False, spaces)


def test_sidecar_never_picks_the_provider_of_a_space_named_after_the_real_id():
    spoofed = scope(
        DatahubSpace(REAL, "project", False, (REAL_P,)),
        DatahubSpace(OTHER, "other", False, (REAL_P,)),
        DatahubSpace(SPOOF, REAL, False, (EVIL_P,)),
    )
    assert choose_provider(spoofed, [REAL, "other"]) == ("real.example.org", [REAL, OTHER])
    assert choose_provider(spoofed, [REAL]) == ("real.example.org", [REAL])


def test_sidecar_refuses_a_name_two_spaces_carry():
    """The attacker's lookalike sorts first by domain: the filter is refused instead."""
    twins = scope(
        DatahubSpace(REAL, "project", False, (REAL_P,)),
        DatahubSpace(TWIN, "project", False, (EVIL_P,)),
    )
    with pytest.raises(AmbiguousSpaceName, match="named 'project'"):
        choose_provider(twins, ["project"])
    assert choose_provider(twins, [REAL]) == ("real.example.org", [REAL])
    assert choose_provider(twins, [f"project@{REAL}"]) == ("real.example.org", [REAL])


def test_sidecar_understands_name_at_id_and_unique_names():
    spaces = scope(DatahubSpace(REAL, "project", False, (REAL_P,)))
    assert choose_provider(spaces, [f"project@{REAL}"]) == ("real.example.org", [REAL])
    assert choose_provider(spaces, ["project"]) == ("real.example.org", [REAL])
    assert choose_provider(spaces, [f"other@{REAL}"]) == (None, [])


def test_sidecar_ties_go_by_writable_support_then_provider_id_not_domain():
    """A provider's admin picks its domain (``a.…`` sorts first), not its Onezone id."""
    ro_evil = support("prov-0-evil", "a.evil.example", read_only=True)
    tie = scope(
        DatahubSpace(REAL, "project", False, (REAL_P, ro_evil)),
    )
    assert choose_provider(tie, [REAL]) == ("real.example.org", [REAL])
    by_id = scope(DatahubSpace(REAL, "project", False, (REAL_P, EVIL_P)))
    # both writable, one space each: the lower Onezone id, whatever the domains
    assert choose_provider(by_id, [REAL])[0] == "a.evil.example"  # "prov-evil" < "prov-real"
    renamed = support("prov-evil", "zzz.evil.example")
    by_id = scope(DatahubSpace(REAL, "project", False, (REAL_P, renamed)))
    assert choose_provider(by_id, [REAL])[0] == "zzz.evil.example"


def test_an_ambiguous_filter_is_the_mounts_error_entry_and_no_sidecar():
    from tests.unit.test_storage_kube import DATAHUB, creds, render, resolve

    twins = (
        DatahubSpace(REAL, "project", False, (REAL_P,)),
        DatahubSpace(TWIN, "project", False, (EVIL_P,)),
    )
    storage = render(resolve({**DATAHUB, "spaces": ["project"]}), {"datahub": creds(*twins)})
    assert storage.extra_containers == [] and storage.secrets == []
    assert storage.errors["datahub"].startswith(
        "DataHub: several of your spaces are named 'project'"
    )
    storage = render(
        resolve({**DATAHUB, "spaces": [f"project@{REAL}"]}), {"datahub": creds(*twins)}
    )
    sidecar = storage.extra_containers[0]
    assert sidecar["env"] == [{"name": "ONECLIENT_PROVIDER_HOST", "value": "real.example.org"}]
    assert sidecar["args"][3:] == ["-o", "allow_other", "--space-id", REAL]
