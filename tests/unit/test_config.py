"""Site files: YAML passed through to traitlets, every bad key named by its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from egi_hub.config import SiteConfigError, load_site_file, site_to_config
from egi_hub.stack import validate_site

REPO = Path(__file__).resolve().parents[2]


def issues(site: dict) -> list[str]:
    with pytest.raises(SiteConfigError) as info:
        validate_site(site)
    return [str(i) for i in info.value.issues]


def test_example_site_file_is_valid():
    validate_site(load_site_file(REPO / "site.example.yaml"))


def test_example_site_files_commented_storage_mounts_are_valid_once_uncommented(tmp_path):
    text = (REPO / "site.example.yaml").read_text()
    start = text.index("# StorageMounts:")
    block = [line.removeprefix("# ") for line in text[start:].splitlines()]
    path = tmp_path / "site.yaml"
    path.write_text(text[:start] + "\n".join(block) + "\n")
    site = load_site_file(path)
    assert site["StorageMounts"]["mounts"][0]["kind"] == "s3"
    validate_site(site)


def test_pass_through_to_traitlets():
    config = site_to_config({"JupyterHub": {"port": 8000}, "DevAuthenticator": {"users": {}}})
    assert config.JupyterHub.port == 8000
    assert config.DevAuthenticator.users == {}


def test_nested_dev_user_type_error_names_the_path():
    site = {"DevAuthenticator": {"users": {"alice": {"entitlements": "urn:x"}}}}
    assert issues(site) == [
        "DevAuthenticator.users.alice.entitlements: expected a list, got string 'urn:x'"
    ]


def test_bad_entitlement_in_dev_users_names_its_index():
    site = {"DevAuthenticator": {"users": {"bob": {"entitlements": ["vo.access.egi.eu"]}}}}
    (issue,) = issues(site)
    assert issue.startswith("DevAuthenticator.users.bob.entitlements[0]: not an AARC-G002")


def test_unknown_key_in_dev_user():
    site = {"DevAuthenticator": {"users": {"bob": {"entitlement": []}}}}
    assert issues(site) == [
        "DevAuthenticator.users.bob.entitlement: unknown key (allowed: entitlements)"
    ]


def test_unknown_class_and_trait_with_suggestions():
    found = issues({"JupyterHbu": {"port": 1}, "JupyterHub": {"prot": 1}})
    assert found == [
        "JupyterHbu: unknown class (did you mean 'JupyterHub'?)",
        "JupyterHub.prot: unknown setting (did you mean 'port'?)",
    ]


def test_wrong_types():
    found = issues(
        {
            "JupyterHub": {"port": "abc", "authenticator_class": "no-such-login"},
            "LocalStack": {"idle_timeout": -1},
            "EGILocalSpawner": "not a mapping",
        }
    )
    assert found == [
        "JupyterHub.port: expected an int, got string 'abc'",
        "JupyterHub.authenticator_class: expected a subclass of "
        "'jupyterhub.auth.Authenticator', got string 'no-such-login'",
        "LocalStack.idle_timeout: must not be less than 0, got -1",
        "EGILocalSpawner: expected a mapping of settings, got string (value not shown)",
    ]


def test_entry_point_names_and_base_classes_are_known():
    validate_site(
        {
            "JupyterHub": {"authenticator_class": "egi-dev", "spawner_class": "egi-local"},
            "Spawner": {"start_timeout": 120},
            "Authenticator": {"admin_users": ["bob"]},
            "ConfigurableHTTPProxy": {"debug": True},
        }
    )


def test_storage_classes_are_known_and_checked():
    """The storage settings a site writes (Kubernetes sidecars, credentials) are checked
    like every other class: KubeMounts was unknown to `config check` at first."""
    validate_site(
        {
            "KubeMounts": {"token_retry_min": 10, "oneclient_image": "oneclient:21.02.5"},
            "MountCredentials": {"refresh_margin": 300},
        }
    )
    assert issues({"KubeMounts": {"token_check_interval": 1}}) == [
        "KubeMounts.token_check_interval: must not be less than 5, got 1"
    ]


def test_not_configurable_trait():
    (issue,) = issues({"JupyterHub": {"hub_prefix": "/x/"}})
    assert issue.startswith("JupyterHub.hub_prefix: is not configurable")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JupyterHub: [1, 2\n", "not valid YAML at line 2"),
        ("- a\n- b\n", "expected a mapping of class names, got list"),
    ],
)
def test_unreadable_files(tmp_path, text, message):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(SiteConfigError) as info:
        load_site_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(SiteConfigError, match="cannot read"):
        load_site_file(tmp_path / "nope.yaml")


def test_empty_file_is_an_empty_site(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("# nothing\n")
    assert load_site_file(path) == {}
