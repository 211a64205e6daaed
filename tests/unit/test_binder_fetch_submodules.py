"""check_submodule_url (binder_service.fetch_submodules): which submodule URLs the fetch
worker follows, and the addresses it pins git to (DNS answered by a stand-in)."""

from __future__ import annotations

import re
import socket

import pytest

from egi_hub.binder_service import fetch_submodules
from egi_hub.binder_service.fetch_submodules import check_submodule_url
from egi_hub.binder_service.record_downloads import WorkerError

TOP = "https://github.com/org/repo"
DNS = {
    "public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "lan.example": ["10.0.0.5"],
    "metadata.example": ["169.254.169.254"],
    "pod-identity.example": ["169.254.170.23"],
    "cgnat.example": ["100.100.100.200"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "mixed.example": ["93.184.215.14", "192.168.1.1"],
}


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in DNS:
            raise socket.gaierror("no such host")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (a, port))
            for a in DNS[host]
        ]  # fmt: skip

    monkeypatch.setattr(fetch_submodules.socket, "getaddrinfo", getaddrinfo)


def test_a_public_host_is_pinned_to_the_addresses_checked() -> None:
    assert check_submodule_url("https://public.example/a/b.git", TOP) == [
        "public.example:443:[2606:2800:21f:cb07:6820:80da:af6b:8b2c],93.184.215.14"
    ]
    assert check_submodule_url("http://public.example:8080/x", TOP) == [
        "public.example:8080:[2606:2800:21f:cb07:6820:80da:af6b:8b2c],93.184.215.14"
    ]
    assert check_submodule_url("git://public.example/x", TOP) == []  # checked, not pinnable


@pytest.mark.parametrize(
    "host", ["lan.example", "metadata.example", "pod-identity.example", "cgnat.example",
             "mapped.example", "mixed.example"],
)  # fmt: skip
@pytest.mark.parametrize("scheme", ["https", "http", "git"])
def test_an_internal_address_is_refused(host: str, scheme: str) -> None:
    with pytest.raises(WorkerError, match=f"refused: {re.escape(host)} is an internal address"):
        check_submodule_url(f"{scheme}://{host}/x.git", TOP)


@pytest.mark.parametrize(
    "url",
    ["file:///etc", "/srv/binder/other", "ssh://git@public.example/x", "git@public.example:x",
     "ext::sh -c touch% /tmp/x", "https:///nohost"],
)  # fmt: skip
def test_only_https_http_and_git_urls(url: str) -> None:
    with pytest.raises(WorkerError, match="is not an https, http or git URL"):
        check_submodule_url(url, TOP)


def test_the_top_repositorys_host_and_a_site_allowing_private_hosts_are_not_checked() -> None:
    assert check_submodule_url("https://github.com/other/x", TOP) == []
    assert check_submodule_url("https://GitHub.com/other/x", TOP) == []
    assert check_submodule_url("https://github.com:443/other/x", TOP) == []
    # the same host on another port may be another service: checked as any host (12c L1)
    with pytest.raises(WorkerError, match=r"lan\.example is an internal address"):
        check_submodule_url("http://lan.example:8081/x", "https://lan.example/org/repo")
    assert check_submodule_url("http://lan.example/x", "http://lan.example/org/repo") == []
    assert check_submodule_url("http://lan.example/x", TOP, private_hosts=True) == []
    with pytest.raises(WorkerError, match="is not an https"):  # the transport still is
        check_submodule_url("file:///etc", TOP, private_hosts=True)


def test_a_host_that_does_not_resolve_and_credentials_are_never_shown() -> None:
    with pytest.raises(WorkerError, match=r"'nowhere\.example' does not resolve"):
        check_submodule_url("https://nowhere.example/x", TOP)
    with pytest.raises(WorkerError) as e:
        check_submodule_url("ssh://user:s3cret@public.example/x", TOP)
    assert "s3cret" not in str(e.value) and "user" not in str(e.value)


@pytest.mark.parametrize("private", [False, True])
async def test_the_service_gives_the_fetch_worker_the_sites_git_settings(
    tmp_path, monkeypatch: pytest.MonkeyPatch, private: bool
) -> None:
    """BinderService._fetch_now passes GitProvider.fetch_settings on: a site that allows
    private hosts gets its submodules there too, any other site none."""
    from traitlets.config import Config

    from egi_hub.binder_service import service as service_module
    from egi_hub.binder_service.jobs import Job
    from egi_hub.binder_service.providers.base import Resolved
    from egi_hub.binder_service.service import BinderService

    seen: list[object] = []

    async def fake_fetch(resolved, content, *, settings=None, **kwargs):
        seen.append(settings)

    monkeypatch.setattr(service_module, "fetch", fake_fetch)
    config = Config({"GitProvider": {"allow_private_hosts": private}})
    binder = BinderService(config=config, data_dir=str(tmp_path), ticket_secret="s" * 40)
    resolved = Resolved(
        spec=None, provider="git", source="https://x.org/r", ref="0" * 40, label="r"
    )
    await binder._fetch_now(Job("k", "build"), resolved, tmp_path / "content")
    assert seen == [{"git_private_hosts": True} if private else None]
