"""The DataHub mount kind's ``spaces`` filter: what config check accepts and refuses."""

from __future__ import annotations

import pytest

from egi_hub.config import TraitPathError
from egi_hub.storage_mounts.mounts import parse_mount

BASE = {"name": "datahub", "kind": "datahub", "onezone_url": "https://datahub.egi.eu",
        "path": "/datahub"}  # fmt: skip


def test_spaces_by_name_or_id_are_kept_as_given():
    mount = parse_mount({**BASE, "spaces": ["My data (2024)", "a1b2c3d4e5", "x@a1b2"]}, "m[0]")
    assert mount.spaces == ("My data (2024)", "a1b2c3d4e5", "x@a1b2")
    assert parse_mount(BASE, "m[0]").spaces == ()


@pytest.mark.parametrize(
    "bad", ["", "a/b", "..", "a..b", "tab\there", "nul\x00", "esc\x1b[0m", "nel\x85", "x" * 256, 7]
)
def test_a_space_that_is_no_name_or_id_stops_config_check_naming_the_key(bad):
    with pytest.raises(TraitPathError) as info:
        parse_mount({**BASE, "spaces": ["ok", bad]}, "StorageMounts.mounts[0]")
    assert "StorageMounts.mounts[0].spaces[1]" in str(info.value)
