"""Binder resolution of GitHub and GitLab links against a stand-in of their REST APIs
(``tests/githost_standin.py``, which follows the documented endpoints): refs to commits,
site and user tokens, private repositories, rate limits, hostile answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from traitlets.config import Config

from egi_hub.binder_service.providers.base import ResolveError
from egi_hub.binder_service.resolver import Resolver
from egi_hub.binder_service.specs import RepoSpec, parse_launch
from tests.githost_standin import GitHostStandin, Repo, fake_sha, start_githost_standin

MAIN, TAG, OLD = fake_sha("main"), fake_sha("v1"), fake_sha("old")
SITE, USER, STRANGER = "site-token-123", "user-token-456", "stranger-token-789"


@pytest.fixture
def standin() -> Iterator[GitHostStandin]:
    running = start_githost_standin()
    running.tokens |= {SITE, USER, STRANGER}
    refs = {"main": MAIN, "feature/x": OLD, "v1.0": TAG}
    running.github["org/repo"] = Repo(dict(refs))
    running.github["org/private"] = Repo(dict(refs), private=True, readers={USER})
    running.gitlab["group/sub/repo"] = Repo(dict(refs))
    running.gitlab["group/private"] = Repo(dict(refs), private=True, readers={USER})
    yield running
    running.stop()


def make_resolver(standin: GitHostStandin, **git: object) -> Resolver:
    config = Config()
    config.GitProvider.github_api_url = standin.url
    config.GitProvider.gitlab_url = standin.url
    for name, value in git.items():
        config.GitProvider[name] = value
    return Resolver(config=config, log=logging.getLogger("test-binder-standin"))


@pytest.fixture
async def resolver(standin: GitHostStandin) -> Iterator[Resolver]:
    made = make_resolver(standin)
    yield made
    await made.close()


def sent(standin: GitHostStandin, header: str) -> list[str]:
    return [headers.get(header, "") for _, _, headers in standin.requests]


async def test_github_refs_resolve_with_the_stand_in(standin, resolver):
    for ref, sha in (("main", MAIN), ("feature/x", OLD), ("v1.0", TAG), (TAG[:7], TAG), (TAG, TAG)):
        resolved = await resolver.resolve(RepoSpec("gh", "org/repo", ref))
        assert resolved.ref == sha
    assert resolved.source == "https://github.com/org/repo"
    assert resolved.label == f"org/repo@{TAG[:7]}"
    assert resolved.fetch == {"provider": "git", "repo": "https://github.com/org/repo", "ref": TAG}
    assert set(sent(standin, "Accept")) == {"application/vnd.github.sha"}
    assert set(sent(standin, "Authorization")) == {""}  # no site token configured


async def test_a_mybinder_link_resolves_with_the_stand_in(standin, resolver):
    link = parse_launch("v2/gh/org/repo/feature%2Fx")
    assert (await resolver.resolve(link.spec)).ref == OLD
    assert standin.requests[-1][1] == "/repos/org/repo/commits/feature/x"


async def test_github_unknown_and_private_repositories_with_the_stand_in(standin, resolver):
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(RepoSpec("gh", "org/repo", "nope"))
    assert (str(e.value), e.value.status) == (
        "GitHub repository org/repo has no branch, tag or commit 'nope'", 404)  # fmt: skip
    standin.github["org/empty"] = Repo({})
    with pytest.raises(ResolveError, match=r"^GitHub repository org/empty is empty$"):
        await resolver.resolve(RepoSpec("gh", "org/empty", "main"))
    for repo in ("org/missing", "org/private"):
        with pytest.raises(ResolveError) as e:
            await resolver.resolve(RepoSpec("gh", repo, "main"))
        assert str(e.value) == (
            f"GitHub has no repository {repo} or no branch, tag or commit 'main' (or it is private)"
        )
        assert e.value.status == 404


async def test_site_and_user_tokens_with_the_stand_in(standin):
    resolver = make_resolver(standin, github_token=SITE)
    private = RepoSpec("gh", "org/private", "main")
    await resolver.resolve(RepoSpec("gh", "org/repo", "main"))
    assert sent(standin, "Authorization") == [f"Bearer {SITE}"]
    # A user's token is ignored while the site does not allow user tokens...
    with pytest.raises(ResolveError, match=r"\(or it is private\)$"):
        await resolver.resolve(private, token=USER)
    assert sent(standin, "Authorization")[-1] == f"Bearer {SITE}"
    # ...and wins over the site's once it does; the hint says how to give one.
    resolver.allow_user_tokens = True
    resolver.forget()
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(private)
    assert str(e.value).endswith(f"(or it is private); {resolver.user_token_hint}")
    assert (await resolver.resolve(private, token=USER)).ref == MAIN
    assert sent(standin, "Authorization")[-1] == f"Bearer {USER}"
    # Another user's token that cannot read it: not found, and no hint to give a token.
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(private, token=STRANGER)
    assert str(e.value).endswith("or the token given cannot read it")
    # An unknown token is refused as such; no reason, label or log holds a token.
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(private, token="revoked")
    assert (str(e.value), e.value.status) == (
        "GitHub refused your access token (expired or revoked?)", 403)  # fmt: skip
    await resolver.close()


async def test_a_bad_site_token_tells_the_admins(standin):
    resolver = make_resolver(standin, github_token="wrong", gitlab_token="wrong")
    for spec, host in ((RepoSpec("gh", "org/repo", "main"), "GitHub"),
                       (RepoSpec("gl", "group/sub/repo", "main"), "GitLab")):  # fmt: skip
        with pytest.raises(ResolveError) as e:
            await resolver.resolve(spec)
        assert e.value.status == 502 and str(e.value).startswith(f"{host} refused the site's token")
    await resolver.close()


async def test_tokens_never_reach_reasons_labels_or_logs(standin, caplog):
    resolver = make_resolver(standin, github_token=SITE)
    resolver.allow_user_tokens = True
    with caplog.at_level(logging.DEBUG):
        resolved = await resolver.resolve(RepoSpec("gh", "org/private", "main"), token=USER)
        reasons = []
        for repo, token in (("org/private", STRANGER), ("org/missing", USER), ("org/x", "bad")):
            with pytest.raises(ResolveError) as e:
                await resolver.resolve(RepoSpec("gh", repo, "main"), token=token)
            reasons.append(str(e.value))
    text = " ".join([caplog.text, repr(resolved), *reasons, repr(list(resolver._cache))])
    for token in (SITE, USER, STRANGER):
        assert token not in text
    await resolver.close()


async def test_github_rate_limit_with_the_stand_in(standin, resolver):
    standin.github_budget = 2
    for ref in ("main", "v1.0"):
        await resolver.resolve(RepoSpec("gh", "org/repo", ref))
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(RepoSpec("gh", "org/repo", "feature/x"))
    assert str(e.value).startswith("GitHub's API rate limit for this site is used up; try again")
    assert str(e.value).endswith("UTC (in 30 min)") and e.value.status == 503
    # With the user's own token, the budget is the user's.
    resolver.allow_user_tokens = True
    standin.used[USER] = 5000
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(RepoSpec("gh", "org/repo", "feature/x"), token=USER)
    assert "rate limit for your token" in str(e.value) and e.value.status == 429


async def test_twenty_concurrent_resolutions_make_one_call_with_the_stand_in(standin, resolver):
    results = await asyncio.gather(
        *(resolver.resolve(RepoSpec("gh", "org/repo", "main")) for _ in range(20))
    )
    assert {r.ref for r in results} == {MAIN}
    assert len(standin.requests) == 1


async def test_gitlab_refs_resolve_with_the_stand_in(standin, resolver):
    for ref, sha in (("main", MAIN), ("feature/x", OLD), ("v1.0", TAG)):
        resolved = await resolver.resolve(RepoSpec("gl", "group/sub/repo", ref))
        assert resolved.ref == sha
    assert resolved.source == f"{standin.url}/group/sub/repo.git"
    assert resolved.label == f"group/sub/repo@{TAG[:7]}"
    # The project path is one URL-encoded segment; so is a ref with a slash.
    paths = [path for _, path, _ in standin.requests]
    assert "/api/v4/projects/group%2Fsub%2Frepo/repository/commits/feature%2Fx" in paths
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(RepoSpec("gl", "group/sub/repo", "nope"))
    assert (str(e.value), e.value.status) == (
        "GitLab project group/sub/repo has no branch, tag or commit 'nope'", 404)  # fmt: skip
    with pytest.raises(ResolveError, match=r"^GitLab has no project group/private \(or it is priv"):
        await resolver.resolve(RepoSpec("gl", "group/private", "main"))


async def test_gitlab_tokens_with_the_stand_in(standin):
    resolver = make_resolver(standin, gitlab_token=SITE)
    resolver.allow_user_tokens = True
    await resolver.resolve(RepoSpec("gl", "group/sub/repo", "main"))
    assert sent(standin, "PRIVATE-TOKEN") == [SITE]
    private = RepoSpec("gl", "group/private", "main")
    assert (await resolver.resolve(private, token=USER)).ref == MAIN
    assert sent(standin, "PRIVATE-TOKEN")[-1] == USER
    assert set(sent(standin, "Authorization")) == {""}  # GitLab's header only
    await resolver.close()


async def test_hostile_answers_with_the_stand_in(standin, resolver):
    where = f"127.0.0.1:{standin.server.server_port}"
    forged = {
        "/repos/org/repo/commits/main": (200, {}, b"<html>sign in</html>"),
        "/repos/org/repo/commits/big": (200, {}, b"a" * 2_000_000),
        "/repos/org/repo/commits/teapot": (418, {}, b"I'm a teapot"),
        "/api/v4/projects/group%2Fsub%2Frepo/repository/commits/main":
            (200, {"Content-Type": "application/json"}, b'{"id": "../../etc/passwd"}'),
    }  # fmt: skip
    standin.forge.update(forged)
    cases = [
        (RepoSpec("gh", "org/repo", "main"), f"GitHub ({where}) answered something that is not"),
        (RepoSpec("gh", "org/repo", "big"), f"GitHub ({where}) answered far more than expected"),
        (RepoSpec("gh", "org/repo", "teapot"), f"GitHub ({where}) answered status 418"),
        (RepoSpec("gl", "group/sub/repo", "main"), f"GitLab ({where}) answered something"),
    ]
    for spec, start in cases:
        with pytest.raises(ResolveError) as e:
            await resolver.resolve(spec)
        assert str(e.value).startswith(start) and e.value.status == 502
        assert "html" not in str(e.value) and "passwd" not in str(e.value)
