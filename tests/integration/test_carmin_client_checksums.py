"""CarminClient's verified transfers against the CARMIN server stand-in (both dialects):
the platform's md5 is asked where it is offered (once per transfer, a cut download still
complete and matching), never where ``/platform`` lists it unsupported (VIP), and once
only where it is refused (VIP's dialect chosen without asking ``/platform``)."""

from __future__ import annotations

import hashlib
import random

import pytest

from egi_hub.carmin import CarminClient
from egi_hub.carmin.retry import RetryPolicy
from tests.carmin_standin import start_carmin_standin

KEY = "standin-key"
HOME = "/vip/Home"


def fast_policy():
    return RetryPolicy(attempts=4, base=0.01, cap=0.05, rng=random.Random(0))


@pytest.fixture(params=["carmin", "vip"])
def standin(request, tmp_path):
    running = start_carmin_standin(tmp_path / "standin", dialect=request.param)
    yield running
    running.stop()


def transfer_twice(client, standin, tmp_path) -> bytes:
    """Upload a 3 MiB file, download it cut after 1 MiB, and again: what came down."""
    data = random.Random(11).randbytes(3 << 20)
    (tmp_path / "in.bin").write_bytes(data)
    client.upload(tmp_path / "in.bin", f"{HOME}/sums.bin")
    assert standin.read_file(f"{HOME}/sums.bin") == data
    standin.cut_next_download(after=1 << 20)
    first = client.download(f"{HOME}/sums.bin", tmp_path / "out" / "a.bin")
    second = client.download(f"{HOME}/sums.bin", tmp_path / "out" / "b.bin")
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin", "b.bin"]
    return first.read_bytes()


def test_md5_asked_only_where_offered(standin, tmp_path):
    standin.clear_requests()
    with CarminClient(standin.url, api_key=KEY, policy=fast_policy(), timeout=10) as c:
        got = transfer_twice(c, standin, tmp_path)
    assert hashlib.md5(got).digest() == hashlib.md5((tmp_path / "in.bin").read_bytes()).digest()
    asked = standin.count("GET", "action=md5")
    puts = standin.count("PUT", "sums.bin")
    assert puts == 1
    if standin.dialect == "vip":
        assert asked == 0  # /platform lists getFileMD5 as unsupported
    else:
        assert asked == 3  # the upload, then each download (while its bytes came)


@pytest.fixture
def vip(tmp_path):
    running = start_carmin_standin(tmp_path / "vip", dialect="vip")
    yield running
    running.stop()


def test_md5_refused_once_then_never_asked(vip, tmp_path):
    """VIP's dialect (only it refuses md5), named explicitly so /platform is not asked."""
    standin = vip
    standin.clear_requests()
    with CarminClient(
        standin.url, api_key=KEY, dialect="vip", policy=fast_policy(), timeout=10
    ) as c:
        transfer_twice(c, standin, tmp_path)
        assert c.calls.md5_offered is False
    assert standin.count("GET", "/platform") == 0
    assert standin.count("GET", "action=md5") == 1
