"""egi_hub.carmin.credentials: where the URL and key come from; key files kept private."""

from __future__ import annotations

import os

import pytest

from egi_hub.carmin import VIP_URL, CarminClient, CarminError
from egi_hub.carmin.credentials import (
    MAX_KEY,
    Credentials,
    check_destination,
    origin_of,
    platform_url,
    read_key_file,
    resolve_credentials,
    token_origins,
)

SECRET = "s3cr3t-key-value"


def key_file(tmp_path, mode=0o600, text=SECRET + "\n"):
    path = tmp_path / "key"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_url_order():
    assert platform_url(None, {}) == VIP_URL
    assert platform_url(None, {"CARMIN_URL": "http://x/rest/"}) == "http://x/rest"
    assert platform_url("https://y/api", {"CARMIN_URL": "http://x"}) == "https://y/api"
    with pytest.raises(CarminError, match="not a platform URL"):
        platform_url("ftp://x", {})


def test_key_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    f = key_file(tmp_path)
    env = {"CARMIN_API_KEY": "env1", "VIP_API_KEY": "env2"}
    assert resolve_credentials("arg", f, None, env).api_key == "arg"
    assert resolve_credentials(None, f, None, env).api_key == SECRET
    assert resolve_credentials(None, None, None, env).source == "CARMIN_API_KEY"
    assert resolve_credentials(None, None, None, {"VIP_API_KEY": "v"}).api_key == "v"
    assert resolve_credentials(None, None, None, {"CARMIN_API_KEY_FILE": str(f)}).api_key == SECRET
    assert resolve_credentials(None, None, None, {}).api_key is None  # no default file yet
    default = tmp_path / ".egi" / "carmin_api_key"
    default.parent.mkdir()
    default.write_text("from-default")
    default.chmod(0o600)
    assert resolve_credentials(None, None, None, {}).api_key == "from-default"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o666])
def test_shared_key_file_is_refused(tmp_path, mode):
    f = key_file(tmp_path, mode)
    with pytest.raises(CarminError) as info:
        read_key_file(f)
    assert "readable or writable by others" in str(info.value)
    assert f"chmod 600 {f}" in info.value.hint
    assert SECRET not in str(info.value)


def test_key_file_problems(tmp_path):
    with pytest.raises(CarminError, match="no API key file"):
        read_key_file(tmp_path / "missing")
    with pytest.raises(CarminError, match="is empty"):
        read_key_file(key_file(tmp_path, text="  \n"))
    with pytest.raises(CarminError, match="not a valid key"):
        read_key_file(key_file(tmp_path, text="two\nlines"))
    with pytest.raises(CarminError, match="not a regular file"):
        read_key_file(tmp_path)
    assert read_key_file(key_file(tmp_path, 0o400)) == SECRET


def test_key_never_in_repr_or_errors(tmp_path):
    client = CarminClient("http://127.0.0.1:9/rest", api_key=SECRET)
    assert SECRET not in repr(client) and "from argument" in repr(client)
    client.close()
    assert SECRET not in repr(Credentials(SECRET, "x"))


def test_bearer_token_sources(monkeypatch, tmp_path):
    assert Credentials(token=None).bearer() is None
    assert Credentials(token="abc").bearer() == "abc"
    assert Credentials(token=lambda: "fresh").bearer() == "fresh"
    assert Credentials(token=lambda: 1 / 0).bearer() is None
    # Check-in token: from egi_hub.token, read per request; outside a notebook: absent
    monkeypatch.setenv("EGI_TOKEN_FILE", str(tmp_path / "missing"))
    assert Credentials(token=True).bearer() is None
    token = tmp_path / "token"
    token.write_text("checkin-token")
    os.chmod(token, 0o600)
    monkeypatch.setenv("EGI_TOKEN_FILE", str(token))
    assert Credentials(token=True).bearer() == "checkin-token"
    assert resolve_credentials(None, None, None, {"CARMIN_TOKEN": "checkin"}).token is True


def test_key_file_is_checked_and_read_on_one_descriptor(tmp_path):
    real = key_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(CarminError, match="is a link"):
        read_key_file(link)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(CarminError, match="not a regular file"):  # and it does not hang
        read_key_file(fifo)
    huge = tmp_path / "huge"
    huge.write_bytes(b"k" * (MAX_KEY + 10) + b"\n" + b"x" * (1 << 20))
    huge.chmod(0o600)
    with pytest.raises(CarminError, match="too long") as info:
        read_key_file(huge)
    assert "kkkk" not in str(info.value)


@pytest.mark.parametrize(
    "url, secret, checkin, words",
    [
        ("http://carmin.lab.example/rest", True, False, "plain http"),
        ("http://10.0.0.5:8080/rest", True, False, "plain http"),
        ("http://127.0.0.1:8080/rest", False, True, "Check-in token"),
        ("https://vip.example.org/rest", False, True, "Check-in token"),
        ("https://vip.creatis.insa-lyon.fr:8443/rest", False, True, "Check-in token"),
        ("https://evil.example/rest", True, True, "CARMIN_TOKEN_ORIGINS"),
    ],
)
def test_credentials_refused_where_they_may_not_go(url, secret, checkin, words):
    with pytest.raises(CarminError, match=words) as info:
        check_destination(url, secret=secret, checkin=checkin, environ={})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "url, secret, checkin, environ",
    [
        ("http://127.0.0.1:8080/rest", True, False, {}),
        ("http://localhost:8080/rest", True, False, {}),
        ("http://[::1]:8080/rest", True, False, {}),
        ("http://carmin.lab.example/rest", False, False, {}),  # nothing secret to send
        ("https://carmin.lab.example/rest", True, False, {}),
        ("https://VIP.creatis.insa-lyon.fr/rest", True, True, {}),
        (
            "https://carmin.lab.example:8443/api",
            True,
            True,
            {"CARMIN_TOKEN_ORIGINS": "https://other.example, https://carmin.lab.example:8443"},
        ),
    ],
)
def test_credentials_allowed(url, secret, checkin, environ):
    check_destination(url, secret=secret, checkin=checkin, environ=environ)


def test_token_origins_ignore_plain_http_entries():
    env = {"CARMIN_TOKEN_ORIGINS": "http://carmin.lab.example https://ok.example"}
    assert origin_of("http://carmin.lab.example") not in token_origins(env)
    assert origin_of("https://ok.example/") in token_origins(env)
    assert origin_of(VIP_URL) in token_origins({})
