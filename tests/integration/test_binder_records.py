"""Resolving ``zenodo`` and ``doi`` links against the **stand-in** for Zenodo's records API
and the DOI proxy's handle API (tests/zenodo_standin.py): version DOIs, concept DOIs to
their latest version (as Zenodo answers today and as it used to), unknown DOIs, DOIs that
point to hosts the site does not list, records without files or over the limits."""

from __future__ import annotations

import httpx
import pytest

from egi_hub.binder_service.providers.base import ResolveError
from egi_hub.binder_service.providers.records import RecordProvider
from egi_hub.binder_service.specs import RepoSpec
from egi_hub.procs import free_port
from tests.zenodo_standin import ZenodoStandin, start_zenodo_standin


@pytest.fixture
def zenodo():
    standin = start_zenodo_standin()
    yield standin
    standin.stop()


@pytest.fixture
async def make_provider():
    clients = []

    def make(standin: ZenodoStandin, **traits) -> RecordProvider:
        provider = RecordProvider(
            zenodo_urls=[standin.url], doi_resolver_url=standin.doi_url, **traits
        )
        provider.http = httpx.AsyncClient(follow_redirects=False)  # as the Resolver sets it
        clients.append(provider.http)
        return provider

    yield make
    for client in clients:
        await client.aclose()


async def test_a_version_doi_resolves_to_that_version_and_is_immutable(zenodo, make_provider):
    v1 = zenodo.publish({"requirements.txt": b"six\n", "intro.ipynb": b"{}"}, version="v1.0")
    zenodo.publish({"requirements.txt": b"six\n"}, concept=v1.concept, version="v2.0")
    provider = make_provider(zenodo)
    spec = RepoSpec("doi", zenodo.doi(v1.id))
    resolved = await provider.resolve(spec)
    assert resolved.provider == "zenodo" and resolved.ref == str(v1.id)
    assert resolved.source == f"{zenodo.api}{v1.id}"
    assert resolved.label == f"zenodo.{v1.id} (v1.0)"
    assert resolved.fetch["api"] == zenodo.api and resolved.fetch["record"] == str(v1.id)
    keys = {f["key"]: f for f in resolved.fetch["files"]}
    assert set(keys) == {"requirements.txt", "intro.ipynb"}
    assert keys["requirements.txt"]["size"] == 4
    assert keys["requirements.txt"]["checksum"].startswith("md5:")
    assert keys["requirements.txt"]["url"].startswith(zenodo.api)
    assert provider.immutable(spec) is True
    # The zenodo provider takes the same DOI.
    again = await provider.resolve(RepoSpec("zenodo", zenodo.doi(v1.id)))
    assert again.ref == resolved.ref and again.content_id == resolved.content_id


async def test_a_concept_doi_resolves_to_the_latest_version(zenodo, make_provider):
    """Zenodo registers new concept DOIs to <site>doi/<doi>; the concept id itself
    answers 404 at the records API today (zenodo/zenodo#2499)."""
    v1 = zenodo.publish({"a.txt": b"1"}, version="v1")
    v2 = zenodo.publish({"a.txt": b"2"}, concept=v1.concept, version="v2")
    provider = make_provider(zenodo)
    spec = RepoSpec("doi", zenodo.doi(v1.concept))
    resolved = await provider.resolve(spec)
    assert resolved.ref == str(v2.id) and resolved.label == f"zenodo.{v2.id} (v2)"
    assert provider.immutable(spec) is False
    assert f"zenodo /api/records/{v1.concept}/versions/latest" in zenodo.requests
    v3 = zenodo.publish({"a.txt": b"3"}, concept=v1.concept, version="v3")
    assert (await provider.resolve(spec)).ref == str(v3.id)


@pytest.mark.parametrize("redirects", [False, True])
async def test_older_concept_dois_and_redirecting_concept_ids(make_provider, redirects):
    """Older concept DOIs point to <site>records/<concept id>; older Zenodo redirected
    that id to the latest version, today's answers 404: both land on the latest."""
    standin = start_zenodo_standin(concept_target="records", concept_redirects=redirects)
    try:
        v1 = standin.publish({"a.txt": b"1"}, version="v1")
        v2 = standin.publish({"a.txt": b"2"}, concept=v1.concept, publication_date="2025-02-03")
        v2.version = ""
        provider = make_provider(standin)
        resolved = await provider.resolve(RepoSpec("doi", standin.doi(v1.concept)))
        assert resolved.ref == str(v2.id) and resolved.label == f"zenodo.{v2.id} (2025-02-03)"
    finally:
        standin.stop()


async def test_an_unknown_doi(zenodo, make_provider):
    with pytest.raises(
        ResolveError, match=r"^the DOI 10\.5281/zenodo\.424242 does not exist$"
    ) as e:
        await make_provider(zenodo).resolve(RepoSpec("doi", "10.5281/zenodo.424242"))
    assert e.value.status == 404


async def test_a_doi_to_an_unlisted_host_names_the_host_and_the_setting(zenodo, make_provider):
    zenodo.register_doi("10.1234/paper.5", "https://journals.example.org/article/5")
    with pytest.raises(ResolveError) as e:
        await make_provider(zenodo).resolve(RepoSpec("doi", "10.1234/paper.5"))
    assert e.value.status == 403
    assert "journals.example.org" in str(e.value) and "RecordProvider.zenodo_urls" in str(e.value)
    # A zenodo link must land on a Zenodo site the service lists.
    zenodo.register_doi("10.5281/zenodo.99", "https://figshare.example/articles/x/99")
    with pytest.raises(ResolveError, match="not to a Zenodo site") as e:
        await make_provider(zenodo).resolve(RepoSpec("zenodo", "10.5281/zenodo.99"))
    assert e.value.status == 403


async def test_a_record_without_files(zenodo, make_provider):
    empty = zenodo.publish({})
    with pytest.raises(ResolveError, match=f"^record {empty.id} has no files$") as e:
        await make_provider(zenodo).resolve(RepoSpec("doi", zenodo.doi(empty.id)))
    assert e.value.status == 404


async def test_a_removed_record_and_a_doi_to_a_record_zenodo_does_not_have(zenodo, make_provider):
    gone = zenodo.publish({"a.txt": b"a"})
    gone.removed = True
    with pytest.raises(ResolveError, match=f"Zenodo record {gone.id} was removed"):
        await make_provider(zenodo).resolve(RepoSpec("doi", zenodo.doi(gone.id)))
    zenodo.register_doi("10.5281/zenodo.555", f"{zenodo.url}records/555")
    with pytest.raises(ResolveError, match="Zenodo has no record 555") as e:
        await make_provider(zenodo).resolve(RepoSpec("doi", "10.5281/zenodo.555"))
    assert e.value.status == 404


async def test_records_over_the_limits_are_refused(zenodo, make_provider):
    big = zenodo.publish({"a.bin": b"x" * 2000, "b.bin": b"y" * 2000})
    provider = make_provider(zenodo, max_record_bytes=3000)
    with pytest.raises(ResolveError, match="limit of 3000 bytes") as e:
        await provider.resolve(RepoSpec("doi", zenodo.doi(big.id)))
    assert e.value.status == 403
    provider = make_provider(zenodo, max_record_files=1)
    with pytest.raises(ResolveError, match="2 files, over this site's limit of 1"):
        await provider.resolve(RepoSpec("doi", zenodo.doi(big.id)))


async def test_hostile_file_names_in_a_record_are_refused(zenodo, make_provider):
    bad = zenodo.publish({"../../home/service/.bashrc": b"evil"})
    with pytest.raises(ResolveError, match=r"refused: .*'\.\.'") as e:
        await make_provider(zenodo).resolve(RepoSpec("doi", zenodo.doi(bad.id)))
    assert e.value.status == 403 and "\n" not in str(e.value)


async def test_an_unreachable_zenodo_is_a_502(zenodo, make_provider):
    v1 = zenodo.publish({"a.txt": b"a"})
    closed = f"http://127.0.0.1:{free_port()}/"
    zenodo.register_doi(zenodo.doi(v1.id), f"{closed}records/{v1.id}")
    provider = make_provider(zenodo)
    provider.zenodo_urls = [closed]
    with pytest.raises(ResolveError, match=r"Zenodo could not be reached \(ConnectError\)") as e:
        await provider.resolve(RepoSpec("doi", zenodo.doi(v1.id)))
    assert e.value.status == 502
