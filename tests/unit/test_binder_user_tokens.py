"""`UserTokens`: users' own tokens in memory, per (user, host), until they expire; the
host a spec's content comes from; who sees a private build record."""

from __future__ import annotations

import pytest

from egi_hub.binder_service.specs import RepoSpec
from egi_hub.binder_service.store import visible_to
from egi_hub.binder_service.user_tokens import (
    MAX_HOSTS_PER_USER,
    MAX_TOKEN,
    BadToken,
    UserTokens,
    check_host,
    check_token,
    token_host,
)

TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_its_users_and_its_hosts_only():
    tokens = UserTokens(ttl=60, clock=Clock())
    tokens.put("alice", "github.com", TOKEN)
    assert tokens.get("alice", "github.com") == TOKEN
    assert tokens.get("bob", "github.com") is None
    assert tokens.get("alice", "gitlab.com") is None
    assert tokens.get("alice", "GITHUB.COM") is None  # the caller passes check_host's form
    tokens.put("alice", "GitHub.com", "other-token")  # replaces: one token per host
    assert tokens.get("alice", "github.com") == "other-token"


def test_a_token_expires_and_listing_never_shows_it():
    clock = Clock()
    tokens = UserTokens(ttl=60, clock=clock)
    expires = tokens.put("alice", "github.com", TOKEN)
    assert expires == clock.now + 60
    assert tokens.hosts("alice") == [{"host": "github.com", "expires": expires}]
    assert TOKEN not in repr(tokens) + repr(tokens._held)
    clock.now += 59.9
    assert tokens.get("alice", "github.com") == TOKEN
    clock.now += 0.1
    assert tokens.get("alice", "github.com") is None
    assert tokens.hosts("alice") == [] and tokens._held == {}  # gone from memory too


def test_delete_forgets_and_says_whether_there_was_one():
    tokens = UserTokens(ttl=60, clock=Clock())
    tokens.put("alice", "github.com", TOKEN)
    assert tokens.delete("bob", "github.com") is False
    assert tokens.get("alice", "github.com") == TOKEN
    assert tokens.delete("alice", "github.com") is True
    assert tokens.delete("alice", "github.com") is False
    assert tokens.hosts("alice") == []


def test_one_user_keeps_tokens_for_a_bounded_number_of_hosts():
    tokens = UserTokens(ttl=60, clock=Clock())
    for i in range(MAX_HOSTS_PER_USER):
        tokens.put("alice", f"git{i}.example.org", TOKEN)
    with pytest.raises(BadToken, match="remove one"):
        tokens.put("alice", "one-more.example.org", TOKEN)
    tokens.put("alice", "git0.example.org", "replaced")  # a known host may be replaced
    tokens.put("bob", "one-more.example.org", TOKEN)  # others are not limited by alice


@pytest.mark.parametrize(
    "bad",
    ["", " ", "a b", "tok\x00en", "tok\nen", "tok\ten", "tök", "x" * (MAX_TOKEN + 1), "\x7f",
     "\u200bx", None, 123, ["t"]],
)  # fmt: skip
def test_odd_tokens_are_refused_without_being_quoted(bad):
    with pytest.raises(BadToken) as e:
        check_token(bad)
    if isinstance(bad, str) and len(bad) > 3:
        assert bad not in str(e.value)


@pytest.mark.parametrize(
    "bad",
    ["", "..", "a..b", ".github.com", "github.com.", "github.com:443", "github.com/x",
     "-github.com", "github-.com", "user@github.com", "gïthub.com", "git hub.com",
     "github.com\n", "x" * 64 + ".org", "a." * 130 + "org", "[::1]", None],
)  # fmt: skip
def test_odd_hosts_are_refused(bad):
    with pytest.raises(BadToken):
        check_host(bad)


def test_good_hosts_in_lower_case():
    assert check_host("GitLab.Example.ORG") == "gitlab.example.org"
    assert check_host("127.0.0.1") == "127.0.0.1"
    assert check_token(TOKEN) == TOKEN


def test_the_host_a_specs_content_comes_from():
    hosts = {"github_url": "https://github.com", "gitlab_url": "https://gitlab.example.org/"}
    assert token_host(RepoSpec("gh", "o/r", "main"), **hosts) == "github.com"
    assert token_host(RepoSpec("gl", "g/p", "main"), **hosts) == "gitlab.example.org"
    git = RepoSpec("git", "https://Git.Example.org:8443/r.git", "main")
    assert token_host(git, **hosts) == "git.example.org"
    assert token_host(RepoSpec("zenodo", "10.5281/zenodo.1", ""), **hosts) is None
    assert token_host(RepoSpec("git", "https://[::1]/r.git", "main"), **hosts) is None


def test_a_private_record_is_shown_to_its_owner_and_admins_only():
    public = {"key": "a" * 16}
    private = {"key": "b" * 16, "private": True, "owner": "alice"}
    assert visible_to(public, "bob")
    assert visible_to(private, "alice") and not visible_to(private, "bob")
    assert visible_to(private, "bob", admin=True)
    for odd in ({"private": True}, {"private": True, "owner": ""}, {"private": True, "owner": 1}):
        assert not visible_to(odd, "") and not visible_to(odd, "alice")
