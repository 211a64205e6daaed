"""Which VO a profile's server is charged to, and what it is charged."""

from __future__ import annotations

import pytest
from tornado import web

from egi_hub.context import UserContext
from egi_hub.spawner.profiles import ProfileListTrait, option_overrides
from tests.spawners import local_vo_spawner

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
NOTEBOOKS = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
PROFILES = ProfileListTrait().validate(
    None,
    [
        {"display_name": "Open", "slug": "open"},
        {
            "display_name": "GPU",
            "slug": "gpu",
            "allowed_vos": ["vo.notebooks.egi.eu"],
            "kubespawner_override": {"cpu_limit": 4, "mem_limit": "8G"},
        },
        {"display_name": "Pinned", "slug": "pinned", "vo": "vo.pinned", "allowed_vos": []},
        {
            "display_name": "Guaranteed",
            "slug": "guaranteed",
            "kubespawner_override": {"cpu_guarantee": 2, "mem_guarantee": "4G"},
        },
        {
            "display_name": "Free",
            "slug": "free",
            "profile_options": {
                "image": {
                    "display_name": "Image",
                    "unlisted_choice": {
                        "enabled": True,
                        "validation_regex": "^.*$",
                        "kubespawner_override": {"image": "{value}"},
                    },
                }
            },
        },
    ],
)
OPEN, GPU, PINNED, GUARANTEED, FREE = PROFILES


def test_a_profile_is_charged_to_the_vo_that_grants_it_not_the_primary_one():
    both = UserContext.from_entitlements("bob", [ACCESS, NOTEBOOKS])  # primary: vo.access
    assert both.primary_vo == "vo.access.egi.eu"
    assert GPU.charged_vo(both) == "vo.notebooks.egi.eu"
    assert OPEN.charged_vo(both) == "vo.access.egi.eu"
    assert PINNED.charged_vo(both) == "vo.pinned"
    # An admin outside the profile's VOs: charged to their primary VO.
    assert GPU.charged_vo(UserContext.from_entitlements("a", [ACCESS])) == "vo.access.egi.eu"


@pytest.fixture
def spawner(tmp_path):
    with local_vo_spawner(tmp_path, "bob", [ACCESS, NOTEBOOKS], list(PROFILES)) as s:
        yield s


async def test_admission_charges_the_granting_vo_and_guarantees(spawner):
    spawner.user_options = {"profile": "gpu"}
    charge = await spawner.admit()
    assert (charge.vo, charge.cpu, charge.memory) == ("vo.notebooks.egi.eu", 4.0, 8 * 2**30)
    spawner.quota.release(charge.user, charge.server)
    spawner.user_options = {"profile": "guaranteed"}
    charge = await spawner.admit()
    assert (charge.cpu, charge.memory) == (2.0, 4 * 2**30)  # guarantees only: still held


@pytest.mark.parametrize("value", [5, ["x"], {"a": 1}, True])
def test_a_free_option_value_that_is_not_text_is_a_400(value):
    with pytest.raises(web.HTTPError) as info:
        option_overrides(FREE, {"image--unlisted-choice": value})
    assert info.value.status_code == 400
    assert "must be text" in str(info.value)
