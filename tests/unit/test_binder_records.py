"""Zenodo record JSON checks and odd remote answers (binder_service.providers.records).

The odd answers (forged redirects, oversized or non-JSON bodies, hostile file entries)
come from an in-process ``httpx.MockTransport``: no socket, no stand-in server. The
documented behaviour is tested against the Zenodo stand-in in
tests/integration/test_binder_records.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from egi_hub.binder_service.providers.base import ResolveError
from egi_hub.binder_service.providers.records import RecordProvider, _on_site
from egi_hub.binder_service.providers.zenodo import (
    _zenodo_id,
    parse_zenodo_files,
    parse_zenodo_record,
)
from egi_hub.binder_service.specs import RepoSpec

SITE = "https://zenodo.example/"
API = SITE + "api/records/"
MD5 = "md5:" + "0" * 32
LIMITS = {"api": API, "max_files": 10, "max_bytes": 1000}


def entry(key="a.txt", size=1, checksum=MD5, url=None, **extra):
    return {"key": key, "size": size, "checksum": checksum,
            "links": {"self": url or f"{API}7/files/{key}/content"}, **extra}  # fmt: skip


def record(**over):
    data = {
        "id": 7,
        "conceptrecid": "6",
        "doi": "10.5281/zenodo.7",
        "conceptdoi": "10.5281/zenodo.6",
        "metadata": {"title": "T", "version": "v1.2", "publication_date": "2024-01-02"},
        "links": {"self": f"{API}7", "files": f"{API}7/files", "latest": f"{API}7/versions/latest"},
        "files": [entry()],
    }
    data.update(over)
    return data


def test_a_documented_record_is_read():
    r = parse_zenodo_record(record(), **LIMITS)
    assert (r.id, r.conceptrecid, r.version, r.publication_date) == ("7", "6", "v1.2", "2024-01-02")
    assert r.files[0].key == "a.txt" and r.files[0].url == f"{API}7/files/a.txt/content"
    assert r.files_url == f"{API}7/files"


def test_files_api_entries_prefer_the_content_link():
    links = {"self": f"{API}7/files/a.txt", "content": f"{API}7/files/a.txt/content"}
    files = parse_zenodo_files([{**entry(), "links": links}], **LIMITS)
    assert files[0].url.endswith("/content")


@pytest.mark.parametrize(
    "data, reason",
    [
        ([], "not a JSON object"),
        (record(id="7; rm -rf /"), "not a record id"),
        (record(id=None), "not a string"),
        (record(conceptrecid="x"), "not a record id"),
        (record(metadata=[]), "not objects"),
        (record(metadata={"version": "v\x1b[2J"}), "control characters"),
        (record(metadata={"publication_date": "yesterday"}), "not a date"),
        (record(links={"files": "file:///etc/passwd"}), "not an http"),
        (record(files={"a": 1}), "not a list"),
    ],
)
def test_odd_records_are_refused_in_one_line(data, reason):
    with pytest.raises(ResolveError, match=reason) as refused:
        parse_zenodo_record(data, **LIMITS)
    assert "\n" not in str(refused.value) and refused.value.status == 502


@pytest.mark.parametrize(
    "files, reason, status",
    [
        ([entry(key="../../etc/cron.d/x")], "'..'", 403),
        ([entry(key="/etc/passwd")], "absolute", 403),
        ([entry(key="a\\b")], "backslash", 403),
        ([entry(key="a\nb")], "control", 403),
        ([entry(key="dir/")], "twice", 403),
        ([entry(), entry()], "twice", 403),
        ([entry(key=3)], "without a name", 502),
        ([entry(size=-1)], "no size", 502),
        ([entry(size=True)], "no size", 502),
        ([entry(size="1")], "no size", 502),
        ([entry(checksum="sha1:abc")], "no checksum", 502),
        ([entry(checksum="md5:XYZ")], "no checksum", 502),
        ([{**entry(), "links": {}}], "no link", 502),
        ([entry(url="http://169.254.169.254/latest/meta-data")], "outside the record's site", 403),
        ([entry(url=f"{API}7/../../../admin")], "outside the record's site", 403),
        ([entry(url="https://zenodo.example.evil.org/api/records/7")], "outside", 403),
        ([entry(key=f"f{i}") for i in range(11)], "11 files, over this site's limit of 10", 403),
        ([entry(size=600), entry(key="b", size=600)], "limit of 1000 bytes", 403),
        (["a.txt"], "not an object", 502),
    ],
)
def test_hostile_file_entries_are_refused(files, reason, status):
    with pytest.raises(ResolveError, match=reason) as refused:
        parse_zenodo_files(files, **LIMITS)
    assert refused.value.status == status and "\n" not in str(refused.value)


def test_record_ids_from_zenodo_urls():
    assert _zenodo_id("records/123") == "123"
    assert _zenodo_id("record/123/") == "123"
    assert _zenodo_id("api/records/123") == "123"
    assert _zenodo_id("doi/10.5281/zenodo.55") == "55"
    for path in ("records/12a", "communities/x", "records/1/files/x", "doi/10.1/other.5", ""):
        assert _zenodo_id(path) is None


def test_site_matching():
    assert _on_site("https://zenodo.org/records/1", "https://zenodo.org/") == "records/1"
    assert _on_site("http://zenodo.org/record/1", "https://zenodo.org/") == "record/1"
    assert _on_site("https://ZENODO.org/records/1", "https://zenodo.org/") == "records/1"
    assert _on_site("https://zenodo.org.evil.net/records/1", "https://zenodo.org/") is None
    assert _on_site("https://zenodo.org:8443/records/1", "https://zenodo.org/") is None
    assert _on_site("http://127.0.0.1:81/records/1", "http://127.0.0.1:80/") is None
    assert _on_site("https://inst.org/zenodo/records/1", "https://inst.org/zenodo/") == "records/1"
    assert _on_site("https://inst.org/other/records/1", "https://inst.org/zenodo/") is None
    assert _on_site("ftp://zenodo.org/records/1", "https://zenodo.org/") is None


def test_site_urls_are_checked_and_normalised():
    provider = RecordProvider(zenodo_urls=["https://zenodo.example"])
    assert provider.zenodo_urls == ["https://zenodo.example/"]
    with pytest.raises(Exception, match="not a site URL"):
        RecordProvider(dataverse_urls=["dataverse.example"])


# -- odd answers through a mock transport (no sockets) -------------------------------


def provider_with(routes: dict[str, httpx.Response]) -> RecordProvider:
    def answer(request: httpx.Request) -> httpx.Response:
        return routes.get(str(request.url), httpx.Response(404, json={"status": 404}))

    provider = RecordProvider(
        zenodo_urls=[SITE], doi_resolver_url="https://doi.example/api/handles/"
    )
    provider.http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return provider


def handle(url: str) -> httpx.Response:
    return httpx.Response(200, json={"responseCode": 1, "values": [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": url}}]})  # fmt: skip


DOI = "10.5281/zenodo.7"
SPEC = RepoSpec("doi", DOI)


async def test_a_redirect_off_the_site_is_refused():
    provider = provider_with({
        f"https://doi.example/api/handles/{DOI}": handle(f"{SITE}records/7"),
        f"{API}7": httpx.Response(302, headers={"Location": "http://169.254.169.254/x"}),
    })  # fmt: skip
    with pytest.raises(ResolveError, match="redirected record 7 somewhere unexpected"):
        await provider.resolve(SPEC)


async def test_a_latest_version_of_another_concept_is_refused():
    other = record(id=9, conceptrecid="8")
    provider = provider_with({
        f"https://doi.example/api/handles/{DOI}": handle(f"{SITE}records/7"),
        f"{API}7/versions/latest": httpx.Response(302, headers={"Location": f"{API}9"}),
        f"{API}9": httpx.Response(200, json=other),
    })  # fmt: skip
    with pytest.raises(ResolveError, match="another concept"):
        await provider.resolve(SPEC)


async def test_a_record_answering_another_id_is_refused():
    provider = provider_with({
        f"https://doi.example/api/handles/{DOI}": handle(f"{SITE}records/7"),
        f"{API}7": httpx.Response(200, json=record(id=8)),
    })  # fmt: skip
    with pytest.raises(ResolveError, match="answered record 8 for record 7"):
        await provider.resolve(SPEC)


async def test_oversized_and_non_json_answers_are_refused():
    huge = httpx.Response(200, content=b"[" + b"0," * (5 << 20) + b"0]")
    provider = provider_with({f"https://doi.example/api/handles/{DOI}": huge})
    with pytest.raises(ResolveError, match="answered more than"):
        await provider.resolve(SPEC)
    provider = provider_with({
        f"https://doi.example/api/handles/{DOI}": handle(f"{SITE}records/7"),
        f"{API}7": httpx.Response(200, content=b"<html>maintenance</html>"),
    })  # fmt: skip
    with pytest.raises(ResolveError, match="not JSON") as refused:
        await provider.resolve(SPEC)
    assert refused.value.status == 502


async def test_handle_values_that_are_not_web_addresses_are_refused():
    for value in ("javascript:alert(1)", "file:///etc/passwd", "https://", 42):
        provider = provider_with({f"https://doi.example/api/handles/{DOI}": handle(value)})
        with pytest.raises(ResolveError, match="points to no web address"):
            await provider.resolve(SPEC)
    provider = provider_with({
        f"https://doi.example/api/handles/{DOI}": httpx.Response(
            200, content=json.dumps({"responseCode": 1, "values": "x"}).encode()
        )
    })  # fmt: skip
    with pytest.raises(ResolveError, match="odd record"):
        await provider.resolve(SPEC)


async def test_a_remote_that_cannot_be_reached_is_a_502():
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    provider = RecordProvider(zenodo_urls=[SITE])
    provider.http = httpx.AsyncClient(transport=httpx.MockTransport(fail))
    with pytest.raises(ResolveError, match=r"could not be reached \(ConnectError\)") as refused:
        await provider.resolve(SPEC)
    assert refused.value.status == 502


async def test_a_record_whose_files_list_is_on_another_site_is_refused():
    data = record(links={"files": "https://elsewhere.example/files"})
    del data["files"]
    provider = provider_with({
        f"https://doi.example/api/handles/{DOI}": handle(f"{SITE}records/7"),
        f"{API}7": httpx.Response(200, json=data),
    })  # fmt: skip
    with pytest.raises(ResolveError, match="lists its files on another site"):
        await provider.resolve(SPEC)


async def test_other_providers_are_not_records():
    provider = RecordProvider()
    with pytest.raises(ResolveError, match="not archived records"):
        await provider.resolve(RepoSpec("gh", "a/b", "main"))


# -- Figshare and Dataverse answers ----------------------------------------------------


def test_figshare_article_pages():
    from egi_hub.binder_service.providers.figshare import figshare_article

    assert figshare_article("articles/dataset/title/9782777") == ("9782777", "")
    assert figshare_article("articles/dataset/title/9782777/2") == ("9782777", "2")
    assert figshare_article("articles/title/9782777/1234") == ("9782777", "1234")
    assert figshare_article("articles/9782777") == ("9782777", "")
    # A DOI naming a version pins it when the page does not (Figshare's redirects vary).
    assert figshare_article("articles/code/t/9782777", "10.6084/m9.figshare.9782777.v3") == (
        "9782777",
        "3",
    )
    for path in ("articles/title/x", "authors/1", "articles", "articles/t/1/2/x"):
        assert figshare_article(path) is None


def test_figshare_files_are_checked():
    from egi_hub.binder_service.providers.figshare import parse_figshare_files

    dl = ("https://ndownloader.figshare.com/",)
    good = {"name": "a.csv", "size": 3, "computed_md5": "0" * 32, "is_link_only": False,
            "download_url": "https://ndownloader.figshare.com/files/1"}  # fmt: skip
    link = {"name": "p.pdf", "size": 0, "is_link_only": True, "download_url": "https://x/p"}
    files = parse_figshare_files({"files": [good, link]}, downloads=dl, max_files=5, max_bytes=9)
    assert [f.key for f in files] == ["a.csv"] and files[0].checksum == "md5:" + "0" * 32
    with pytest.raises(ResolveError, match=r"'\.\.'"):
        parse_figshare_files({"files": [{**good, "name": "../x"}]}, downloads=dl, max_files=5,
                             max_bytes=9)  # fmt: skip
    with pytest.raises(ResolveError, match="no checksum"):
        parse_figshare_files({"files": [{**good, "computed_md5": ""}]}, downloads=dl,
                             max_files=5, max_bytes=9)  # fmt: skip
    with pytest.raises(ResolveError, match="without a file list"):
        parse_figshare_files({"files": None}, downloads=dl, max_files=5, max_bytes=9)


def test_dataverse_pages():
    from egi_hub.binder_service.providers.dataverse import dataverse_dataset

    assert dataverse_dataset("citation", "persistentId=doi:10.7910/DVN/TJCLKP") == (
        "doi:10.7910/DVN/TJCLKP"
    )
    assert dataverse_dataset("dataset.xhtml", "persistentId=hdl:11529/10016") == "hdl:11529/10016"
    for path, query, reason in [
        ("file.xhtml", "persistentId=doi:10.7910/DVN/6ZXAGT/3YRRYJ", "single Dataverse file"),
        ("dataverse/harvard", "", "not a dataset"),
        ("citation", "persistentId=doi:10.7910/x&persistentId=doi:10.7910/y", "not a dataset"),
        ("citation", "persistentId=doi:10.7910/DVN/x%0Ay", "odd identifier"),
        ("citation", "persistentId=javascript:alert(1)", "odd identifier"),
    ]:
        with pytest.raises(ResolveError, match=reason):
            dataverse_dataset(path, query)


def test_dataverse_files_are_checked():
    from egi_hub.binder_service.providers.dataverse import parse_dataverse_files

    site = "https://dv.example/"
    plain = {"label": "a.py", "directoryLabel": "code", "restricted": False,
             "dataFile": {"id": 7, "filesize": 4, "checksum": {"type": "SHA-256",
                                                                "value": "A" * 64}}}  # fmt: skip
    table = {"label": "t.tab", "restricted": False,
             "dataFile": {"id": 8, "filesize": 99, "md5": "b" * 32,
                          "originalFileName": "t.csv", "originalFileSize": 5}}  # fmt: skip
    hidden = {**plain, "restricted": True}
    files = parse_dataverse_files([plain, table, hidden], site=site, max_files=9, max_bytes=99)
    assert [(f.key, f.size, f.checksum[:7]) for f in files] == [
        ("code/a.py", 4, "sha256:"),
        ("t.csv", 5, "md5:bbb"),
    ]
    assert files[0].url == f"{site}api/access/datafile/7?format=original"
    for bad, reason in [
        ({**plain, "directoryLabel": "../.."}, "'..'"),
        ({**plain, "directoryLabel": "/etc"}, "absolute"),
        ({**plain, "dataFile": {**plain["dataFile"], "id": "7/../../admin"}}, "without an id"),
        ({**plain, "dataFile": {**plain["dataFile"], "checksum": {"type": "CRC"}}}, "checksum"),
        ({"label": "x"}, "without its dataFile"),
    ]:
        with pytest.raises(ResolveError, match=reason):
            parse_dataverse_files([bad], site=site, max_files=9, max_bytes=99)
