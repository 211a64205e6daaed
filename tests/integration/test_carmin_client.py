"""egi_hub.carmin's clients against the CARMIN server stand-in (tests/carmin_standin), a
real HTTP server on 127.0.0.1 running Boutiques pipelines, in both dialects: upload,
launch, follow to the end, results, stdout/stderr, errors with hints, 500s and cut or
stalled downloads."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from egi_hub.carmin import (
    AsyncCarminClient,
    CarminClient,
    CarminError,
    CarminInputError,
    ExecutionStatus,
    RetryPolicy,
    check_inputs,
    extract_archive,
)
from tests.carmin_standin import start_carmin_standin
from tests.stackrunner import wait_for

KEY = "standin-key"


def fast_policy(attempts=4):
    return RetryPolicy(attempts=attempts, base=0.01, cap=0.05, rng=random.Random(0))


@pytest.fixture(params=["carmin", "vip"])
def standin(request, tmp_path):
    running = start_carmin_standin(tmp_path / "standin", dialect=request.param)
    yield running
    running.stop()


@pytest.fixture
def carmin(standin):
    with CarminClient(standin.url, api_key=KEY, policy=fast_policy(), timeout=10) as c:
        yield c


def pipeline_id(client, name):
    return next(p.identifier for p in client.pipelines() if p.name == name)


def follow(client, identifier, timeout=60):
    return wait_for(
        lambda: (e := client.execution(identifier)).status.is_final and e,
        timeout,
        f"execution {identifier} to end",
    )


def test_platform_and_auto_detected_dialect(standin, carmin):
    platform = carmin.platform()
    assert carmin.detect_dialect() == standin.dialect
    assert "Processing" in platform.modules


def test_full_run_with_a_non_ascii_file(standin, carmin, tmp_path):
    local = tmp_path / "données ü.txt"
    local.write_text("one two three four\n")
    home = "/vip/Home"
    remote = f"{home}/données ü.txt"
    progress = []
    carmin.upload(local, remote, progress=lambda done, total: progress.append(done))
    assert standin.read_file(remote) == local.read_bytes() and progress[-1] == local.stat().st_size
    assert carmin.exists(remote) and not carmin.exists(f"{home}/nothing-here")
    assert any(p.name == "données ü.txt" for p in carmin.list(home))

    wc = pipeline_id(carmin, "wordcount")
    descriptor = carmin.boutiques(wc)
    inputs = check_inputs(descriptor, {"input_file": remote, "output_name": "n.txt"})
    started = carmin.create_execution(wc, inputs, "count words")
    assert started.status in (ExecutionStatus.RUNNING, ExecutionStatus.FINISHED)
    done = follow(carmin, started.identifier)
    assert done.status is ExecutionStatus.FINISHED, carmin.stderr(started.identifier)
    assert "counted the words" in carmin.stdout(started.identifier)
    results = carmin.results(started.identifier)
    assert [r.name for r in results] == ["n.txt"]
    dest = carmin.download(results[0], tmp_path / "out" / "n.txt")
    assert dest.read_text().strip() == "4"
    assert any(e.identifier == started.identifier for e in carmin.executions())
    assert carmin.count_executions() >= 1


def test_failing_tool_reaches_execution_failed_with_its_stderr(carmin):
    failing = carmin.create_execution(pipeline_id(carmin, "fails"), {"message": "it broke"})
    done = follow(carmin, failing.identifier)
    assert done.status is ExecutionStatus.EXECUTION_FAILED
    assert "it broke" in carmin.stderr(failing.identifier)


def test_unknown_parameter_is_refused_before_sending(standin, carmin):
    wc = pipeline_id(carmin, "wordcount")
    descriptor = carmin.boutiques(wc)
    standin.clear_requests()
    with pytest.raises(CarminInputError, match="'nope': unknown parameter"):
        check_inputs(descriptor, {"input_file": "/vip/Home/x", "nope": "1"})
    with pytest.raises(CarminInputError, match="'input_file': missing required File"):
        check_inputs(descriptor, {})
    assert standin.count("POST") == 0


def test_unknown_pipeline_and_bad_key(standin, carmin):
    with pytest.raises(CarminError) as info:
        carmin.boutiques("nosuch/0.0")
    assert "%carmin pipelines" in info.value.hint
    bad = CarminClient(standin.url, api_key="wrong-key", policy=fast_policy())
    with pytest.raises(CarminError) as info:
        bad.pipelines()
    assert info.value.status == 401 and "CARMIN_API_KEY" in info.value.hint
    assert "wrong-key" not in str(info.value) and "\n" not in str(info.value)


def test_too_many_running_executions_explained(tmp_path):
    standin = start_carmin_standin(tmp_path / "s", dialect="vip", max_running=1)
    try:
        with CarminClient(standin.url, api_key=KEY, policy=fast_policy()) as c:
            sleeps = pipeline_id(c, "sleeps")
            first = c.create_execution(sleeps, {"seconds": 30})
            with pytest.raises(CarminError) as info:
                c.create_execution(sleeps, {"seconds": 30})
            assert info.value.too_many_executions
            assert "wait for one to finish or kill one" in str(info.value)
            c.kill(first.identifier)
            assert follow(c, first.identifier).status is ExecutionStatus.KILLED
            c.delete_execution(first.identifier, delete_files=True)
    finally:
        standin.stop()


def test_500s_retried_then_a_clear_error(standin, carmin):
    standin.fail_next(2, 500, path_contains="/pipelines")
    assert carmin.pipelines()
    standin.fail_next(10, 500, path_contains="/pipelines")
    with pytest.raises(CarminError) as info:
        carmin.pipelines()
    assert info.value.status == 500 and "try again later" in info.value.hint


def test_cut_download_is_resumed_and_complete(standin, carmin, tmp_path):
    data = random.Random(7).randbytes(3 << 20)
    standin.put_file("/vip/Home/big.bin", data)
    standin.cut_next_download(after=1 << 20)
    standin.clear_requests()
    dest = carmin.download("/vip/Home/big.bin", tmp_path / "out" / "big.bin")
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    ranges = [r.headers.get("Range") for r in standin.requests if "action=content" in r.path]
    assert ranges[0] is None and ranges[1] == f"bytes={1 << 20}-"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["big.bin"]


def test_stalled_download_times_out_and_is_resumed(standin, tmp_path):
    data = random.Random(8).randbytes(1 << 20)
    standin.put_file("/vip/Home/slow.bin", data)
    standin.stall_next_download(after=100_000)
    with CarminClient(standin.url, api_key=KEY, policy=fast_policy(), timeout=0.5) as c:
        started = time.monotonic()
        dest = c.download("/vip/Home/slow.bin", tmp_path / "slow.bin")
    assert dest.read_bytes() == data and time.monotonic() - started < 30
    standin.release_stalled()


def test_download_given_up_leaves_nothing(standin, tmp_path):
    standin.put_file("/vip/Home/f.bin", b"x" * 100_000)
    for _ in range(3):
        standin.cut_next_download(after=0)
    with CarminClient(standin.url, api_key=KEY, policy=fast_policy(attempts=3)) as c:
        with pytest.raises(CarminError, match="after 3 attempt"):
            c.download("/vip/Home/f.bin", tmp_path / "out" / "f.bin")
    assert list((tmp_path / "out").iterdir()) == []


def test_data_operations(standin, carmin, tmp_path):
    carmin.mkdir("/vip/Home/sub")
    assert carmin.properties("/vip/Home/sub").is_directory
    carmin.upload(_file(tmp_path, b"hello"), "/vip/Home/sub/h.txt")
    assert carmin.content("/vip/Home/sub/h.txt") == b"hello"
    if standin.dialect == "carmin":
        assert carmin.md5("/vip/Home/sub/h.txt") == hashlib.md5(b"hello").hexdigest()
    carmin.delete("/vip/Home/sub")
    assert not carmin.exists("/vip/Home/sub")


def test_results_folder_as_archive_extracted_safely(standin, carmin, tmp_path):
    carmin.mkdir("/vip/Home/res")
    carmin.upload(_file(tmp_path, b"r1"), "/vip/Home/res/a.txt")
    archive = carmin.download("/vip/Home/res", tmp_path / "res.tar")
    names = extract_archive(archive, tmp_path / "res")
    found = [n for n in names if n.endswith("a.txt")]
    assert len(found) == 1 and (tmp_path / "res" / found[0]).read_bytes() == b"r1"


async def test_async_client_follows_an_execution(standin, tmp_path):
    async with AsyncCarminClient(standin.url, api_key=KEY, policy=fast_policy()) as c:
        wc = next(p.identifier for p in await c.pipelines() if p.name == "wordcount")
        standin.put_file("/vip/Home/in.txt", b"a b c\n")
        started = await c.create_execution(wc, {"input_file": "/vip/Home/in.txt"})
        deadline = time.monotonic() + 60
        while not (e := await c.execution(started.identifier)).status.is_final:
            assert time.monotonic() < deadline
            await _yield_briefly()
        assert e.status is ExecutionStatus.FINISHED
        results = await c.results(started.identifier)
        dest = await c.download(results[0], tmp_path / "counts.txt")
        assert dest.read_text().strip() == "3"


async def _yield_briefly():
    import asyncio

    await asyncio.sleep(0.05)


def _file(tmp_path, content):
    path = tmp_path / f"f{hashlib.md5(content).hexdigest()[:6]}"
    path.write_bytes(content)
    return path
