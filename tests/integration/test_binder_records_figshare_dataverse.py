"""Figshare articles and Dataverse datasets behind ``v2/doi`` links, against **stand-ins**
for Figshare's public API (tests/figshare_standin.py), a Dataverse installation's native
and data access APIs (tests/dataverse_standin.py) and the DOI proxy's handle API
(tests/zenodo_standin.py): resolved to a pinned version, then fetched by the real fetch
worker (repo2docker's providers with our safe downloads)."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest

from egi_hub.binder_service.fetch import fetch
from egi_hub.binder_service.providers.base import FetchError, ResolveError
from egi_hub.binder_service.providers.records import RecordProvider
from egi_hub.binder_service.specs import RepoSpec
from tests.dataverse_standin import StandinFile, start_dataverse_standin
from tests.figshare_standin import start_figshare_standin
from tests.zenodo_standin import start_zenodo_standin


@pytest.fixture(scope="module")
def sites():
    dois = start_zenodo_standin()
    figshare = start_figshare_standin(dois)
    dataverse = start_dataverse_standin(dois)
    yield dois, figshare, dataverse
    for standin in (dataverse, figshare, dois):
        standin.stop()


@pytest.fixture
async def provider(sites):
    dois, figshare, dataverse = sites
    made = RecordProvider(
        zenodo_urls=[],
        doi_resolver_url=dois.doi_url,
        figshare_urls=[figshare.url],
        figshare_api_url=figshare.api,
        figshare_download_urls=[figshare.downloads],
        dataverse_urls=[dataverse.url],
    )
    async with httpx.AsyncClient() as client:
        made.http = client
        yield made


async def test_figshare_version_and_concept_dois(sites, provider):
    _, figshare, _ = sites
    paper = {"paper.pdf": "https://journal.example/p.pdf"}
    article, v1 = figshare.publish({"requirements.txt": b"six\n"}, links=paper)
    _, v2 = figshare.publish({"requirements.txt": b"six\nattrs\n"}, article=article)
    pinned = RepoSpec("doi", figshare.doi(article, v1))
    resolved = await provider.resolve(pinned)
    assert resolved.provider == "figshare" and resolved.ref == f"{article}.v1"
    assert resolved.source == f"{figshare.api}articles/{article}/versions/1"
    assert [f["key"] for f in resolved.fetch["files"]] == ["requirements.txt"]  # no link-only
    assert provider.immutable(pinned) is True
    concept = RepoSpec("doi", figshare.doi(article))
    latest = await provider.resolve(concept)
    assert latest.ref == f"{article}.v{v2}" and provider.immutable(concept) is False


async def test_a_figshare_article_is_fetched_through_its_storage_redirect(
    sites, provider, tmp_path
):
    _, figshare, _ = sites
    article, version = figshare.publish({"requirements.txt": b"six\n", "a.ipynb": b"{}"})
    resolved = await provider.resolve(RepoSpec("doi", figshare.doi(article, version)))
    dest = tmp_path / "fig"
    lines: list[str] = []
    await fetch(resolved, dest, on_line=lines.append, settings=provider.fetch_settings())
    assert (dest / "requirements.txt").read_bytes() == b"six\n"
    assert (dest / "a.ipynb").read_bytes() == b"{}"
    assert any(r.startswith("figshare /storage/") for r in figshare.requests)


async def test_a_figshare_zip_is_unwrapped_and_a_tampered_file_fails(sites, provider, tmp_path):
    _, figshare, _ = sites
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("binder-example-main/requirements.txt", "six\n")
    article, version = figshare.publish({"binder-example.zip": buf.getvalue()})
    resolved = await provider.resolve(RepoSpec("doi", figshare.doi(article, version)))
    await fetch(resolved, tmp_path / "zip", on_line=lambda _: None)
    assert [p.name for p in (tmp_path / "zip").iterdir()] == ["requirements.txt"]
    article, version = figshare.publish({"data.csv": b"1,2\n"})
    resolved = await provider.resolve(RepoSpec("doi", figshare.doi(article, version)))
    figshare.tamper[figshare.file_id(article, version, "data.csv")] = b"6,6\n"
    with pytest.raises(FetchError, match="does not match its checksum"):
        await fetch(resolved, tmp_path / "bad", on_line=lambda _: None)
    assert not (tmp_path / "bad").exists()


async def test_figshare_files_off_the_download_hosts_are_refused(sites, provider):
    _, figshare, _ = sites
    article, version = figshare.publish({"a.txt": b"a"})
    provider.figshare_download_urls = ["https://ndownloader.figshare.com/"]
    with pytest.raises(ResolveError, match="links outside the record's site") as e:
        await provider.resolve(RepoSpec("doi", figshare.doi(article, version)))
    assert e.value.status == 403


async def test_figshare_unknown_article(sites, provider):
    dois, figshare, _ = sites
    dois.register_doi("10.6084/m9.figshare.1", f"{figshare.url}articles/dataset/x/1")
    with pytest.raises(ResolveError, match="Figshare has no article 1"):
        await provider.resolve(RepoSpec("doi", "10.6084/m9.figshare.1"))


DATASET = [
    StandinFile("requirements.txt", b"six\n"),
    StandinFile("code/analysis.py", b"print(1)\n"),
    StandinFile("data/table.csv", b"a,b\n1,2\n", ingested=True),
    StandinFile("secret.txt", b"not for you", restricted=True),
]


async def test_a_dataverse_dataset_resolves_to_its_latest_published_version(sites, provider):
    _, _, dataverse = sites
    dataverse.publish("10.7910/DVN/AAAA01", DATASET[:1])
    pid = dataverse.publish("10.7910/DVN/AAAA01", DATASET)
    spec = RepoSpec("doi", "10.7910/DVN/AAAA01")
    resolved = await provider.resolve(spec)
    assert resolved.provider == "dataverse" and resolved.label == f"{pid} (v2.0)"
    keys = {f["key"]: f for f in resolved.fetch["files"]}
    assert set(keys) == {"requirements.txt", "code/analysis.py", "data/table.csv"}
    assert keys["data/table.csv"]["size"] == len(b"a,b\n1,2\n")  # the original, not the .tab
    assert provider.immutable(spec) is False


async def test_a_dataverse_dataset_is_fetched_at_the_resolved_version(sites, provider, tmp_path):
    _, _, dataverse = sites
    dataverse.publish("10.7910/DVN/BBBB02", DATASET)
    resolved = await provider.resolve(RepoSpec("doi", "10.7910/DVN/BBBB02"))
    dataverse.publish("10.7910/DVN/BBBB02", [StandinFile("other.txt", b"v2")])  # moves on
    dest = tmp_path / "dv"
    await fetch(resolved, dest, on_line=lambda _: None, settings=provider.fetch_settings())
    assert (dest / "requirements.txt").read_bytes() == b"six\n"
    assert (dest / "code" / "analysis.py").read_bytes() == b"print(1)\n"
    assert (dest / "data" / "table.csv").read_bytes() == b"a,b\n1,2\n"  # the original upload
    assert not (dest / "secret.txt").exists() and not (dest / "other.txt").exists()


async def test_dataverse_refusals(sites, provider):
    dois, _, dataverse = sites
    dataverse.publish("10.7910/DVN/CCCC03", DATASET, draft=True)
    with pytest.raises(ResolveError, match="Dataverse has no published dataset"):
        await provider.resolve(RepoSpec("doi", "10.7910/DVN/CCCC03"))
    dois.register_doi(
        "10.7910/DVN/CCCC03/XYZ", f"{dataverse.url}file.xhtml?persistentId=doi:10.7910/DVN/X/Y"
    )
    with pytest.raises(ResolveError, match="names a single Dataverse file"):
        await provider.resolve(RepoSpec("doi", "10.7910/DVN/CCCC03/XYZ"))
    dataverse.publish("10.7910/DVN/DDDD04", [StandinFile("../../etc/x", b"x")])
    with pytest.raises(ResolveError, match=r"refused: .*'\.\.'"):
        await provider.resolve(RepoSpec("doi", "10.7910/DVN/DDDD04"))


async def test_a_dataverse_not_listed_is_refused(sites, provider):
    _, _, dataverse = sites
    dataverse.publish("10.7910/DVN/EEEE05", DATASET[:1])
    provider.dataverse_urls = []
    with pytest.raises(ResolveError, match=r"RecordProvider\.dataverse_urls") as e:
        await provider.resolve(RepoSpec("doi", "10.7910/DVN/EEEE05"))
    assert e.value.status == 403
