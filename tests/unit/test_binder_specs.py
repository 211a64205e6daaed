"""Binder launch links (issue 10): mybinder-compatible specs parsed, refused, built back."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from egi_hub.binder_service.specs import BadSpec, LaunchRequest, RepoSpec, parse_launch


@pytest.mark.parametrize(
    ("path", "spec"),
    [
        ("v2/gh/binder-examples/requirements/HEAD",
         RepoSpec("gh", "binder-examples/requirements", "HEAD")),
        ("v2/gh/org/repo.git/feature/with-slash",
         RepoSpec("gh", "org/repo", "feature/with-slash")),
        ("v2/gh/org/repo/feature%2Fescaped", RepoSpec("gh", "org/repo", "feature/escaped")),
        ("/v2/gh/org/repo/0123456789abcdef0123456789abcdef01234567",
         RepoSpec("gh", "org/repo", "0123456789abcdef0123456789abcdef01234567")),
        ("v2/gl/group%2Fsub%2Frepo/main", RepoSpec("gl", "group/sub/repo", "main")),
        ("v2/git/https%3A%2F%2Fgit.example.org%2Fteam%2Fproject.git/v1.0",
         RepoSpec("git", "https://git.example.org/team/project.git", "v1.0")),
        ("v2/git/git%3A%2F%2F127.0.0.1%3A9418%2Frepo/main",
         RepoSpec("git", "git://127.0.0.1:9418/repo", "main")),
        ("v2/zenodo/10.5281/zenodo.3242074", RepoSpec("zenodo", "10.5281/zenodo.3242074")),
        ("v2/doi/10.6084/m9.figshare.9782777.v1",
         RepoSpec("doi", "10.6084/m9.figshare.9782777.v1")),
    ],
)  # fmt: skip
def test_mybinder_links_name_what_mybinder_does(path, spec):
    assert parse_launch(path) == LaunchRequest(spec)
    # Built back into a link, the spec parses to itself.
    assert parse_launch(spec.path).spec == spec


def test_repository_urls():
    assert parse_launch("v2/gh/o/r/main").spec.repo_url == "https://github.com/o/r"
    assert parse_launch("v2/gl/g%2Fr/main").spec.repo_url == "https://gitlab.com/g/r"
    doi = parse_launch("v2/doi/10.5281/zenodo.1").spec
    assert doi.repo_url == "https://doi.org/10.5281/zenodo.1"


@pytest.mark.parametrize(
    ("query", "urlpath"),
    [
        ({}, ""),
        ({"urlpath": "lab/tree/intro.ipynb"}, "lab/tree/intro.ipynb"),
        ({"urlpath": "/voila/render/a.ipynb?x=1"}, "voila/render/a.ipynb?x=1"),
        ({"labpath": "notebooks/intro.ipynb"}, "lab/tree/notebooks/intro.ipynb"),
        ({"filepath": "README.md"}, "tree/README.md"),
        ({"urlpath": "lab", "labpath": "ignored.ipynb"}, "lab"),
    ],
)
def test_where_to_land(query, urlpath):
    assert parse_launch("v2/gh/o/r/main", query).urlpath == urlpath


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("v1/gh/o/r/main", "starts with v2"),
        ("v2/svn/o/r/main", "unknown provider 'svn'"),
        ("v2/gh/", "names no GitHub"),
        ("v2/gh/o/r", "v2/gh/<owner>/<repo>/<ref>"),
        ("v2/gh/../r/main", "not a GitHub owner"),
        ("v2/gh/o/r%00x/main", "not a GitHub repository"),
        ("v2/gh/o/r/main\n", "control characters"),
        ("v2/gh/o/r/%0a", "control characters"),
        ("v2/gh/o/r/a..b", "not a valid git ref"),
        ("v2/gh/o/r/-upload-pack", "not a valid git ref"),
        ("v2/gh/o/r/a/../b", "not a valid git ref"),
        ("v2/gh/o/r/" + "x" * 300, "longer than"),
        ("v2/gl/repo/main", "not a GitLab project path"),
        ("v2/gl/g%2F..%2Fr/main", "not a GitLab project path"),
        ("v2/git/file%3A%2F%2F%2Fetc%2Fpasswd/main", "must start with https://"),
        ("v2/git/ext%3A%3Ash%20-c%20id/main", "must start with"),
        ("v2/git/ssh%3A%2F%2Fhost%2Frepo/main", "must start with"),
        ("v2/git/https%3A%2F%2Fu%3Ap%40host%2Frepo/main", "must not carry credentials"),
        ("v2/git/https%3A%2F%2F%2Frepo/main", "needs a host"),
        ("v2/git/https%3A%2F%2Fhost%2Fa%2F..%2Fb/main", "'.' or '..' segments"),
        ("v2/git/https%3A%2F%2Fhost%2Frepo%3Fx%3D1/main", "query"),
        ("v2/git/https%3A%2F%2Fhost%2Frepo", "v2/git/<url-escaped repository URL>/<ref>"),
        ("v2/doi/not-a-doi", "is not a DOI"),
        ("v2/doi/10.1234/../x", "is not a DOI"),
        ("v2/zenodo/10.6084/m9.figshare.1", "not a Zenodo DOI"),
    ],
)
def test_hostile_or_malformed_links_are_refused_with_a_reason(path, words):
    with pytest.raises(BadSpec) as info:
        parse_launch(path)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "query",
    [
        {"urlpath": "https://evil.example/"},
        {"urlpath": "//evil.example/x"},
        {"urlpath": "lab/../../hub/admin"},
        {"urlpath": "lab/%2e%2e/x"},
        {"labpath": "a\\b"},
        {"labpath": "x\x00"},
    ],
)
def test_landing_paths_stay_inside_the_server(query):
    with pytest.raises(BadSpec):
        parse_launch("v2/gh/o/r/main", query)


def test_a_spec_built_from_odd_but_valid_parts_round_trips():
    spec = RepoSpec("git", "https://host.example/a b%/c.git", "release/2024.1")
    with pytest.raises(BadSpec, match="spaces"):  # spaces are refused even escaped
        parse_launch(spec.path)
    spec = RepoSpec("git", "https://host.example/a%25b/c.git", "release/2024.1")
    assert quote(spec.repo, safe="") in spec.path
    assert parse_launch(spec.path).spec == spec


@pytest.mark.parametrize(
    ("link", "label"),
    [
        ("v2/gh/org/repo/main", "org/repo @ main (GitHub)"),
        ("v2/gl/group%2Fsub%2Frepo/v1.0", "group/sub/repo @ v1.0 (GitLab)"),
        ("v2/git/https%3A%2F%2Fexample.org%2Fr.git/HEAD", "https://example.org/r.git @ HEAD"),
        ("v2/zenodo/10.5281/zenodo.123", "DOI 10.5281/zenodo.123"),
    ],
)
def test_a_spec_reads_well_for_people(link, label):
    assert parse_launch(link).spec.label == label
