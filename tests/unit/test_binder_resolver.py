"""The Binder Resolver (issue 10, point 2): dispatch, cache expiry, single flight,
negative cache, tokens kept out of keys, reasons and logs. Providers here are test
doubles of the provider interface (no remote service); time is an injected clock."""

from __future__ import annotations

import asyncio
import logging

import pytest
from traitlets.config import Config

from egi_hub.binder_service import resolver as resolver_module
from egi_hub.binder_service.providers.base import Resolved, ResolveError
from egi_hub.binder_service.providers.git import GitProvider, MaybePrivate
from egi_hub.binder_service.resolver import Resolver
from egi_hub.binder_service.specs import RepoSpec

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "ghp_SECRETsecretSECRET0123456789"
SPEC = RepoSpec("gh", "org/repo", "main")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """A provider double: answers from ``answers`` (ref -> SHA or exception), counts
    calls, and can be held at a gate so callers pile up."""

    providers = ("gh", "git")

    def __init__(self) -> None:
        self.calls: list[tuple[RepoSpec, str | None]] = []
        self.answers: dict[str, str | Exception] = {}
        self.gate: asyncio.Event | None = None
        self.called = asyncio.Event()
        self.http = None
        self.closed = False

    async def resolve(self, spec: RepoSpec, *, token: str | None = None) -> Resolved:
        self.calls.append((spec, token))
        self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.get(spec.ref, SHA)
        if isinstance(answer, Exception):
            raise answer
        return Resolved(spec, "git", spec.repo_url, answer, f"{spec.repo}@{answer[:7]}")

    def immutable(self, spec: RepoSpec) -> bool:
        return len(spec.ref) == 40

    def close(self) -> None:
        self.closed = True


@pytest.fixture
async def setup():
    clock = Clock()
    log = logging.getLogger("test-binder-resolver")
    resolver = Resolver(clock=clock, log=log)
    provider = Provider()
    resolver.use(provider)
    yield resolver, provider, clock
    await resolver.close()


async def test_dispatch_by_provider_name(setup):
    resolver, provider, _ = setup
    resolved = await resolver.resolve(SPEC)
    assert resolved.ref == SHA and resolved.label == "org/repo@0123456"
    assert provider.calls == [(SPEC, None)]
    with pytest.raises(ResolveError, match="no provider resolves 'svn' links") as e:
        await resolver.resolve(RepoSpec("svn", "x", "y"))
    assert e.value.status == 400


async def test_git_provider_is_made_with_the_resolver_as_parent():
    config = Config({"GitProvider": {"github_api_url": "https://github.example.org/api/v3"}})
    resolver = Resolver(config=config)
    provider = resolver.provider_for("gh")
    assert isinstance(provider, GitProvider) and provider.parent is resolver
    assert provider.github_api_url == "https://github.example.org/api/v3"
    assert provider.http is resolver.http  # one shared client
    assert resolver.provider_for("git") is provider and resolver.provider_for("gl") is provider
    await resolver.close()


async def test_a_provider_that_cannot_be_loaded_is_one_line(monkeypatch):
    monkeypatch.setitem(resolver_module.PROVIDER_CLASSES, "zenodo", ".providers.nothing:X")
    resolver = Resolver()
    with pytest.raises(ResolveError, match=r"^zenodo links cannot be resolved on this site$"):
        await resolver.resolve(RepoSpec("zenodo", "10.5281/zenodo.1"))
    await resolver.close()


async def test_moving_refs_expire_after_cache_ttl(setup):
    resolver, provider, clock = setup
    await resolver.resolve(SPEC)
    clock.now += resolver.cache_ttl - 1
    await resolver.resolve(SPEC)
    assert len(provider.calls) == 1
    provider.answers["main"] = "f" * 40  # the branch moved
    clock.now += 2
    assert (await resolver.resolve(SPEC)).ref == "f" * 40
    assert len(provider.calls) == 2
    assert resolver.stats == {"hits": 1, "misses": 2, "shared": 0, "errors": 0, "entries": 1}


async def test_immutable_refs_stay_for_immutable_ttl(setup):
    resolver, provider, clock = setup
    spec = RepoSpec("gh", "org/repo", SHA)
    await resolver.resolve(spec)
    clock.now += resolver.immutable_ttl - 1
    await resolver.resolve(spec)
    assert len(provider.calls) == 1
    clock.now += 2
    await resolver.resolve(spec)
    assert len(provider.calls) == 2


async def test_twenty_concurrent_resolutions_make_one_remote_call(setup):
    resolver, provider, _ = setup
    provider.gate = asyncio.Event()
    callers = [asyncio.create_task(resolver.resolve(SPEC)) for _ in range(20)]
    await provider.called.wait()
    callers[0].cancel()  # one caller gives up: the others still get the answer
    provider.gate.set()
    results = await asyncio.gather(*callers[1:])
    assert {r.ref for r in results} == {SHA}
    assert len(provider.calls) == 1
    assert callers[0].cancelled()
    assert resolver.stats["misses"] == 1 and resolver.stats["shared"] == 19


async def test_failures_are_cached_for_negative_ttl(setup):
    resolver, provider, clock = setup
    provider.answers["nope"] = ResolveError("GitHub has no branch 'nope'", 404)
    spec = RepoSpec("gh", "org/repo", "nope")
    errors = []
    for _ in range(5):
        with pytest.raises(ResolveError) as e:
            await resolver.resolve(spec)
        errors.append(e.value)
    assert len(provider.calls) == 1
    assert {(str(e), e.status) for e in errors} == {("GitHub has no branch 'nope'", 404)}
    assert len({id(e) for e in errors}) == 5  # a fresh exception each time
    clock.now += resolver.negative_ttl + 1
    provider.answers["nope"] = SHA  # pushed meanwhile
    assert (await resolver.resolve(spec)).ref == SHA
    assert resolver.stats["errors"] == 1


async def test_a_slow_provider_ends_in_a_timeout_reason(setup):
    resolver, provider, _ = setup
    resolver.timeout = 0.05
    provider.gate = asyncio.Event()  # never set
    with pytest.raises(ResolveError, match=r"took longer than 0\.05 s") as e:
        await resolver.resolve(SPEC)
    assert e.value.status == 504


async def test_a_provider_bug_is_a_one_line_500(setup, caplog):
    resolver, provider, _ = setup
    provider.answers["main"] = KeyError("internal detail")
    with caplog.at_level(logging.ERROR, logger="test-binder-resolver"):
        with pytest.raises(ResolveError) as e:
            await resolver.resolve(SPEC)
    assert e.value.status == 500 and "internal detail" not in str(e.value)
    assert "KeyError" in caplog.text  # the admins see the traceback


async def test_user_tokens_are_ignored_unless_the_site_allows_them(setup):
    resolver, provider, _ = setup
    await resolver.resolve(SPEC, token=TOKEN)
    assert provider.calls == [(SPEC, None)]
    resolver.allow_user_tokens = True
    resolver.forget()
    await resolver.resolve(SPEC, token=TOKEN)
    assert provider.calls[-1] == (SPEC, TOKEN)


async def test_token_resolutions_are_kept_per_token_and_never_hold_the_token(setup, caplog):
    resolver, provider, _ = setup
    resolver.allow_user_tokens = True
    private = RepoSpec("gh", "org/private", "main")
    provider.answers["main"] = "a" * 40
    with caplog.at_level(logging.DEBUG, logger="test-binder-resolver"):
        await resolver.resolve(private, token=TOKEN)
        await resolver.resolve(private, token=TOKEN)
        assert len(provider.calls) == 1
        # Another user's token, or none, never sees that answer.
        await resolver.resolve(private, token="other-token")
        await resolver.resolve(private)
    assert [t for _, t in provider.calls] == [TOKEN, "other-token", None]
    for key in resolver._cache:
        assert TOKEN not in repr(key)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in repr(e) for e in resolver._cache.values())


async def test_a_public_answer_serves_token_holders_too(setup):
    resolver, provider, _ = setup
    resolver.allow_user_tokens = True
    await resolver.resolve(SPEC)
    await resolver.resolve(SPEC, token=TOKEN)
    assert len(provider.calls) == 1
    # A public failure does not: with a token, a private repository may resolve.
    spec = RepoSpec("gh", "org/repo", "secret-branch")
    provider.answers["secret-branch"] = MaybePrivate("GitHub has no ... (or it is private)", 404)
    with pytest.raises(ResolveError):
        await resolver.resolve(spec)
    provider.answers["secret-branch"] = SHA
    assert (await resolver.resolve(spec, token=TOKEN)).ref == SHA


async def test_maybe_private_says_how_to_give_a_token_where_the_site_allows_it(setup):
    resolver, provider, clock = setup
    provider.answers["main"] = MaybePrivate("GitHub has no repository org/repo (or it is private)")
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(SPEC)
    assert str(e.value) == "GitHub has no repository org/repo (or it is private)"
    resolver.allow_user_tokens = True
    clock.now += resolver.negative_ttl + 1
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(SPEC)
    assert str(e.value).endswith(f"; {resolver.user_token_hint}")
    assert "\n" not in str(e.value)


async def test_the_cache_is_bounded_oldest_first(setup):
    resolver, provider, _ = setup
    resolver.max_entries = 3
    for ref in ("a", "b", "c", "d"):
        await resolver.resolve(RepoSpec("gh", "org/repo", ref))
    assert resolver.stats["entries"] == 3
    await resolver.resolve(RepoSpec("gh", "org/repo", "d"))  # still there
    await resolver.resolve(RepoSpec("gh", "org/repo", "a"))  # dropped first: a remote call
    assert [s.ref for s, _ in provider.calls] == ["a", "b", "c", "d", "a"]


async def test_close_cancels_calls_under_way_and_closes_providers(setup):
    resolver, provider, _ = setup
    provider.gate = asyncio.Event()
    caller = asyncio.create_task(resolver.resolve(SPEC))
    await provider.called.wait()
    await resolver.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert provider.closed


def test_every_setting_has_help_with_its_default():
    for cls in (Resolver, GitProvider):
        for name, trait in cls.class_traits(config=True).items():
            if name in ("log_level", "log_format", "log_datefmt"):
                continue
            if trait.this_class is not cls:
                continue
            assert trait.help and "Default" in trait.help, f"{cls.__name__}.{name}"
