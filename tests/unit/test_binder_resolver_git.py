"""The git provider's rules without a remote (issue 10, point 2): ``git ls-remote`` output
read as hostile input, ref precedence, URLs that never reach git, full SHAs taken as
they are, reasons for git's failures and rate limits. The last tests answer API calls
in-process (``httpx.MockTransport``, no socket) with what no documented API sends."""

from __future__ import annotations

import time

import httpx
import pytest

from egi_hub.binder_service.providers.base import ResolveError
from egi_hub.binder_service.providers.git import (
    MAX_ANSWER,
    GitProvider,
    MaybePrivate,
    _git_failure,
    _when,
    check_git_url,
    check_ref,
    parse_ls_remote,
    pick_ref,
)
from egi_hub.binder_service.specs import RepoSpec

A, B, C = "a" * 40, "b" * 40, "c" * 40


def test_ls_remote_output_is_read_into_refs():
    out = f"{A}\tHEAD\n{A}\trefs/heads/main\n{B}\trefs/tags/v1\n{C}\trefs/tags/v1^{{}}\n"
    assert parse_ls_remote(out.encode(), "h") == {
        "HEAD": A, "refs/heads/main": A, "refs/tags/v1": B, "refs/tags/v1^{}": C,
    }  # fmt: skip
    assert parse_ls_remote(b"", "h") == {}
    sha256 = "d" * 64
    assert parse_ls_remote(f"{sha256}\trefs/heads/x\n".encode(), "h") == {"refs/heads/x": sha256}


@pytest.mark.parametrize(
    "out",
    [
        b"zzzz" + b"a" * 36 + b"\trefs/heads/main\n",  # not hex
        b"a" * 39 + b"\trefs/heads/main\n",  # too short
        b"a" * 41 + b"\trefs/heads/main\n",  # too long
        b"A" * 40 + b"\trefs/heads/main\n",  # git writes lower case
        b"a" * 40 + b" refs/heads/main\n",  # no tab
        b"a" * 40 + b"\t\n",  # no name
        b"a" * 40 + b"\trefs/heads/ma\x1bin\n",  # a control character
        b"a" * 40 + b"\trefs/heads/" + b"x" * 5000 + b"\n",  # a huge line
        b"a" * 40 + b"\trefs/heads/\xff\xfe\n",  # not UTF-8
        b"<html>Welcome</html>\n",
    ],
)
def test_hostile_ls_remote_output_is_refused_without_quoting_it(out):
    with pytest.raises(ResolveError) as e:
        parse_ls_remote(out, "git.example.org/repo")
    assert str(e.value) == "git.example.org/repo answered something that is not a list of git refs"
    assert e.value.status == 502


def test_refs_are_picked_as_git_rev_parse_does():
    refs = {
        "HEAD": A, "refs/heads/main": A, "refs/heads/v1": A, "refs/tags/v1": B,
        "refs/tags/v1^{}": C, "refs/tags/light": B, "refs/pull/1/head": C,
    }  # fmt: skip
    assert pick_ref(refs, "main") == A
    assert pick_ref(refs, "v1") == C  # a tag before a branch, peeled to its commit
    assert pick_ref(refs, "refs/tags/v1") == C
    assert pick_ref(refs, "refs/heads/v1") == A
    assert pick_ref(refs, "light") == B
    assert pick_ref(refs, "HEAD") == A
    assert pick_ref(refs, "pull/1/head") == C
    assert pick_ref(refs, "nope") is None
    assert pick_ref({}, "HEAD") is None


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc", "file://localhost/srv/repo.git", "ext::sh -c touch% /tmp/pwned",
        "ext::sh", "ssh://git@example.org/repo.git", "git@example.org:repo.git",
        "-oProxyCommand=x", "--upload-pack=touch /tmp/x", "https://user:pw@example.org/r.git",
        "https://example.org/r.git\n", "https:///r.git", "http::https://example.org/r",
        "/srv/repo.git", "", "fd::17", "https://exa mple.org/r",
    ],
)  # fmt: skip
def test_urls_git_must_never_see(url):
    with pytest.raises(ResolveError) as e:
        check_git_url(url)
    assert e.value.status == 400


@pytest.mark.parametrize(
    "url",
    ["https://example.org/r.git", "http://127.0.0.1:8080/r.git", "git://host/team/r"],
)
def test_urls_git_may_see(url):
    assert check_git_url(url) == url


@pytest.mark.parametrize(
    "ref", ["", "a..b", "-x", "x y", "x\x00", "a~1", "a^", "a:b", "x*", "x?", "[x", "x" * 256]
)
def test_refs_that_name_nothing_are_refused(ref):
    with pytest.raises(ResolveError, match="not a valid git branch, tag or commit name"):
        check_ref(ref)


async def test_file_and_ext_urls_never_reach_git(unit_lane_guard):
    """Handed to the provider directly (no link parser in front), they are refused before
    any process starts (the unit lane's guard fails the test on any process)."""
    provider = GitProvider()
    for url in ("file:///etc", "ext::sh -c id", "ssh://host/r.git"):
        with pytest.raises(ResolveError, match="only https://, http:// and git://"):
            await provider.resolve(RepoSpec("git", url, "main"))
    assert unit_lane_guard == []


async def test_a_full_sha_resolves_to_itself_without_a_remote_call():
    # (no DNS look-up either: the public-host check has its own tests, with addresses)
    provider = GitProvider(allow_private_hosts=True)
    url = "https://git.example.org/team/repo.git"
    spec = RepoSpec("git", url, A.upper())
    resolved = await provider.resolve(spec)
    assert (resolved.provider, resolved.source, resolved.ref) == ("git", url, A)
    assert resolved.label == "git.example.org/team/repo@aaaaaaa"
    assert resolved.fetch == {"provider": "git", "repo": url, "ref": A}
    assert provider.immutable(spec)
    assert not provider.immutable(RepoSpec("git", url, "main"))
    assert not provider.immutable(RepoSpec("git", url, "aaaaaaa"))


def test_gits_failures_become_reasons():
    where = "git.example.org/repo"
    cases = {
        "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused":
            (f"cannot reach {where}: the connection was refused or failed", 502),
        "fatal: unable to access 'https://x/': Could not resolve host: x":
            (f"cannot reach {where}: unknown host", 502),
        "fatal: remote error: no such repository: /nope.git":
            (f"{where} is not a git repository (or it is private)", 404),
        "fatal: repository 'http://h/nope.git/' not found":
            (f"{where} is not a git repository (or it is private)", 404),
        "fatal: could not read Username for 'https://h': terminal prompts disabled":
            (f"{where} asks for credentials (a private repository?)", 403),
        "fatal: transport 'file' not allowed":
            ("only https://, http:// and git:// repository URLs are allowed", 400),
        "remote: <script>alert(1)</script>\nfatal: protocol error":
            (f"git could not list the branches and tags of {where}", 502),
    }  # fmt: skip
    for stderr, (reason, status) in cases.items():
        error = _git_failure(stderr, where)
        assert (str(error), error.status) == (reason, status), stderr
    assert isinstance(_git_failure("fatal: repository 'x' not found", where), MaybePrivate)


def test_rate_limit_reset_times():
    reset = int(time.time()) + 600
    clock = time.strftime("%H:%M UTC", time.gmtime(reset))
    assert _when({"x-ratelimit-reset": str(reset)}) == f"; try again at {clock} (in 10 min)"
    assert _when({"retry-after": "60"}).endswith("(in 1 min)")
    for odd in ({}, {"x-ratelimit-reset": "soon"}, {"x-ratelimit-reset": "9" * 30},
                {"x-ratelimit-reset": str(reset + 10 * 86400)}):  # fmt: skip
        assert _when(odd) == "; try again later"


def test_site_tokens_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("EGI_BINDER_GITHUB_TOKEN", "site-gh")
    monkeypatch.setenv("EGI_BINDER_GITLAB_TOKEN", "site-gl")
    provider = GitProvider()
    assert (provider.github_token, provider.gitlab_token) == ("site-gh", "site-gl")


class Body(httpx.AsyncByteStream):
    """A body that arrives as a network one does (not read ahead)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):
        for start in range(0, len(self.data), 65536):
            yield self.data[start : start + 65536]


def _provider(answer) -> GitProvider:
    return GitProvider(http=httpx.AsyncClient(transport=httpx.MockTransport(answer)))


@pytest.mark.parametrize(
    "body",
    [b"not-a-sha", b"<html>" + b"a" * 40, b"a" * 39, b"A-" + b"a" * 38, b"x" * (MAX_ANSWER * 2)],
)
async def test_odd_github_answers_name_the_host_not_the_body(body):
    provider = _provider(lambda request: httpx.Response(200, stream=Body(body)))
    with pytest.raises(ResolveError) as e:
        await provider.resolve(RepoSpec("gh", "org/repo", "main"))
    assert e.value.status == 502 and str(e.value).startswith("GitHub (api.github.com) answered")
    assert "<html>" not in str(e.value)


@pytest.mark.parametrize(
    "answer",
    [b"[]", b"not json", b'{"id": 5}', b'{"id": "main"}', b'{"short_id": "aaaaaaa"}'],
)
async def test_odd_gitlab_answers_are_refused(answer):
    provider = _provider(lambda request: httpx.Response(200, stream=Body(answer)))
    with pytest.raises(ResolveError) as e:
        await provider.resolve(RepoSpec("gl", "group/repo", "main"))
    assert e.value.status == 502 and str(e.value).startswith("GitLab (gitlab.com) answered")


async def test_an_unreachable_api_is_one_line():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ResolveError) as e:
        await _provider(refuse).resolve(RepoSpec("gh", "org/repo", "main"))
    assert str(e.value) == "cannot reach GitHub (api.github.com) (ConnectError)"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (RepoSpec("gh", "org/../etc", "main"), "is not a GitHub repository"),
        (RepoSpec("gh", "org", "main"), "is not a GitHub repository"),
        (RepoSpec("gl", "just-one", "main"), "is not a GitLab project path"),
        (RepoSpec("gl", "g/%2e%2e/r", "main"), "is not a GitLab project path"),
        (RepoSpec("zenodo", "10.5281/zenodo.1", ""), "not a valid git branch"),
    ],
)
async def test_specs_the_parser_would_refuse_are_refused_here_too(spec, reason):
    provider = _provider(lambda request: pytest.fail("no request expected"))
    with pytest.raises(ResolveError, match=reason):
        await provider.resolve(spec)
