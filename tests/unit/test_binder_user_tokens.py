"""`UserTokens`: users' own tokens in memory, per (user, https origin), until they expire;
the origin a spec's content or a clone URL comes from (https only, host and port); who
sees a private build record; where a builder puts a private launch's image."""

from __future__ import annotations

from pathlib import Path

import pytest

from egi_hub.binder_service.builders.base import BuildFailed
from egi_hub.binder_service.builders.docker import DockerBuilder
from egi_hub.binder_service.builders.kubernetes import KubernetesBuilder
from egi_hub.binder_service.specs import RepoSpec
from egi_hub.binder_service.store import visible_to
from egi_hub.binder_service.user_tokens import (
    MAX_HOSTS_PER_USER,
    MAX_TOKEN,
    BadToken,
    UserTokens,
    check_origin,
    check_token,
    origin_of_url,
    token_origin,
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
    assert tokens.get("alice", "GITHUB.COM") is None  # the caller passes check_origin's form
    assert tokens.get("alice", "github.com:8443") is None  # another port: another origin
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


def test_any_access_purges_every_users_expired_tokens():
    clock = Clock()
    tokens = UserTokens(ttl=60, clock=clock)
    tokens.put("alice", "github.com", TOKEN)
    tokens.put("carol", "gitlab.com", TOKEN)
    clock.now += 61
    tokens.put("dave", "gitlab.com", TOKEN)  # dave's token is fresh
    assert set(tokens._held) == {"dave"}  # a put purged alice's and carol's
    clock.now += 61
    assert tokens.get("bob", "github.com") is None  # bob's own lookup purges dave's
    assert tokens._held == {}


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
    ["", "..", "a..b", ".github.com", "github.com..", "github.com/x", "github.com:",
     "github.com:0", "github.com:65536", "github.com:99999", "github.com:-1",
     "github.com:443:443", "github.com:4a", "github.com: 443", "https://github.com",
     "-github.com", "github-.com", "user@github.com", "gïthub.com", "git hub.com",
     "github.com\n", "x" * 64 + ".org", "a." * 130 + "org", "[::1]", "[::1]:443", None],
)  # fmt: skip
def test_odd_origins_are_refused(bad):
    with pytest.raises(BadToken):
        check_origin(bad)


def test_origins_have_one_spelling():
    assert check_origin("GitLab.Example.ORG") == "gitlab.example.org"
    assert check_origin("github.com.") == "github.com"  # a trailing dot is the same host
    assert check_origin("GitHub.com.:443") == "github.com"  # 443 is https' own
    assert check_origin("git.uni.example:8443") == "git.uni.example:8443"
    assert check_origin("127.0.0.1:0443") == "127.0.0.1"
    assert check_token(TOKEN) == TOKEN


def test_the_origin_a_specs_content_comes_from_https_only():
    hosts = {"github_url": "https://github.com", "gitlab_url": "https://gitlab.example.org/"}
    assert token_origin(RepoSpec("gh", "o/r", "main"), **hosts) == "github.com"
    assert token_origin(RepoSpec("gl", "g/p", "main"), **hosts) == "gitlab.example.org"
    git = RepoSpec("git", "https://Git.Example.org:8443/r.git", "main")
    assert token_origin(git, **hosts) == "git.example.org:8443"  # never the bare host's
    assert token_origin(RepoSpec("git", "https://git.example.org.:443/r", "x"), **hosts) == (
        "git.example.org"
    )
    assert token_origin(RepoSpec("zenodo", "10.5281/zenodo.1", ""), **hosts) is None
    assert token_origin(RepoSpec("git", "https://[::1]/r.git", "main"), **hosts) is None
    for clear in ("http://git.example.org/r", "git://git.example.org/r"):
        assert token_origin(RepoSpec("git", clear, "main"), **hosts) is None
    http = {"github_url": "http://github.example.org", "gitlab_url": "http://gl.example.org"}
    assert token_origin(RepoSpec("gh", "o/r", "main"), **http) is None
    assert token_origin(RepoSpec("gl", "g/p", "main"), **http) is None


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://git.uni.example:8443/x", "git.uni.example:8443"),
        ("https://git.uni.example/x", "git.uni.example"),
        ("HTTPS://Git.Uni.Example.:443/x", "git.uni.example"),
        ("http://git.uni.example/x", None),
        ("https://user:pw@git.uni.example/x", None),
        ("https://git.uni.example:99999/x", None),
        ("https://git.uni.example:x/x", None),
        ("ssh://git.uni.example/x", None),
        ("file:///etc/passwd", None),
        ("", None),
    ],
)
def test_the_origin_of_a_clone_url(url, origin):
    assert origin_of_url(url) == origin


def test_a_private_record_is_shown_to_its_owner_and_admins_only():
    public = {"key": "a" * 16}
    private = {"key": "b" * 16, "private": True, "owner": "alice"}
    assert visible_to(public, "bob")
    assert visible_to(private, "alice") and not visible_to(private, "bob")
    assert visible_to(private, "bob", admin=True)
    for odd in ({"private": True}, {"private": True, "owner": ""}, {"private": True, "owner": 1}):
        assert not visible_to(odd, "") and not visible_to(odd, "alice")


def test_a_pushing_builder_never_puts_a_private_image_under_the_public_prefix(tmp_path):
    """kubernetes always pushes and docker with ``push`` pushes: a private launch's image
    goes under ``private_image_prefix`` or nowhere (the builder refuses, naming the
    setting); docker without push keeps it in the local engine."""
    key = "a" * 40
    kube = KubernetesBuilder(image_prefix="registry.example.org/binder/env:")
    assert "KubernetesBuilder.private_image_prefix" in kube.private_refusal()
    with pytest.raises(BuildFailed, match="private_image_prefix"):
        kube.image_name(key, private=True)
    kube.private_image_prefix = "registry.example.org/site-only/env:"
    assert kube.private_refusal() is None
    assert kube.image_name(key, private=True) == f"registry.example.org/site-only/env:{key}"
    assert kube.image_name(key) == f"registry.example.org/binder/env:{key}"
    with pytest.raises(Exception, match="cannot start an image name"):
        kube.private_image_prefix = "Not An Image/"

    docker = DockerBuilder(image_prefix="registry.example.org/binder/env:", push=True)
    assert "DockerBuilder.private_image_prefix" in docker.private_refusal()
    with pytest.raises(BuildFailed, match="private_image_prefix"):
        docker.command(key, Path(tmp_path), private=True)
    docker.private_image_prefix = "registry.example.org/site-only/env:"
    cmd = docker.command(key, Path(tmp_path), private=True)
    assert cmd[cmd.index("--image-name") + 1].startswith("registry.example.org/site-only/")
    assert "--push" in cmd
    local = DockerBuilder(push=False)
    assert local.private_refusal() is None
    cmd = local.command(key, Path(tmp_path), private=True)
    assert cmd[cmd.index("--image-name") + 1] == f"egi-binder-env:{key}" and "--push" not in cmd
