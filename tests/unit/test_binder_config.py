"""Binder settings: a bad site file fails its check naming the key, before anything runs."""

from __future__ import annotations

import pytest

from egi_hub.binder_service.service import BinderConfigError, BinderService
from egi_hub.config import check_site, configurable_classes


def issues(site):
    return {i.path: i.message for i in check_site(site, configurable_classes())}


def test_the_site_check_names_bad_binder_keys():
    found = issues(
        {
            "BinderService": {
                "builder": "nope",
                "allowed_specs": ["gh/ok/.*", "(unclosed"],
                "banned_specs": "not-a-list",
                "build_concurrency": 0,
                "buidler": "venv",
            },
            "VenvBuilder": {"pip_args": "--no-index"},
            "Resolver": {"cache_ttl": "soon"},
        }
    )
    assert "any of ['venv', 'docker', 'kubernetes']" in found["BinderService.builder"]
    assert "not a regular expression" in found["BinderService.allowed_specs[1]"]
    assert "BinderService.banned_specs" in found
    assert "BinderService.build_concurrency" in found
    assert "did you mean 'builder'" in found["BinderService.buidler"]
    assert "VenvBuilder.pip_args" in found and "Resolver.cache_ttl" in found


def test_a_good_binder_section_passes():
    assert issues({"BinderService": {"builder": "venv", "banned_specs": ["gh/evil/.*"]}}) == {}


def test_the_service_does_not_start_without_the_spawners_ticket_secret(tmp_path):
    with pytest.raises(BinderConfigError, match=r"BinderService\.ticket_secret"):
        BinderService(data_dir=str(tmp_path), ticket_secret="short")
