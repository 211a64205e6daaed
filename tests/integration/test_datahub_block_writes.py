"""``datahub://`` writes of whole blocks, sent without buffering, against the Onedata
stand-in (`tests/onedata_standin.py`, Onedata cannot run here).

`DatahubFile.write` hands a block of ``blocksize`` bytes or more straight to the upload
when nothing is buffered (no copy: tests/benchmarks/bench_storage.py). These check that
the file on the server is still exactly what was written, whatever the mix of direct
and buffered writes: truncation by the first block, offsets after, append and exclusive
modes, and ``tell()``.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest

from egi_hub.singleuser.datahub import DatahubFileSystem
from tests.onedata_standin import start_onedata_standin

BLOCK = 2**16


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    running = start_onedata_standin(tmp_path_factory.mktemp("onedata"))
    yield running
    assert running.state.errors == []
    running.stop()


@pytest.fixture
def space(standin, request):
    name = "blocks-" + request.node.name[-30:]
    return name, standin.add_space(name, ["carol-id"])


@pytest.fixture
def fs(standin):
    return DatahubFileSystem(
        onezone_url=standin.onezone_url,
        token=standin.mint_token("carol-id"),
        verify=standin.ca_file,
        skip_instance_cache=True,
    )


def content_puts(standin, since: int) -> list[tuple[int | None, int]]:
    """(offset or None, body length) of each content PUT after request number ``since``."""
    out = []
    for method, target, headers in standin.requests()[since:]:
        if method == "PUT" and urlsplit(target).path.endswith("/content"):
            offset = parse_qs(urlsplit(target).query).get("offset")
            out.append((int(offset[0]) if offset else None, int(headers["content-length"])))
    return out


def test_standin_whole_blocks_overwrite_a_longer_file(fs, standin, space):
    """Only whole blocks: each is one PUT as written; the first has no offset, so the
    longer file that was there is truncated."""
    name, space_id = space
    standin.write_file(space_id, "f.bin", b"old" * 100_000)
    blocks = [os.urandom(BLOCK) for _ in range(3)]
    before = len(standin.requests())
    with fs.open(f"{name}/f.bin", "wb", block_size=BLOCK) as f:
        for block in blocks:
            assert f.write(block) == BLOCK
        assert f.tell() == 3 * BLOCK
    assert standin.read_file(space_id, "f.bin") == b"".join(blocks)
    assert content_puts(standin, before) == [(None, BLOCK), (BLOCK, BLOCK), (2 * BLOCK, BLOCK)]


def test_standin_direct_and_buffered_writes_mixed(fs, standin, space):
    """Small, big-after-small (buffered), big on an empty buffer (direct), bigger than a
    block, a bytearray and a memoryview (buffered), then a tail: the bytes in order."""
    name, space_id = space
    parts = [
        os.urandom(100),
        os.urandom(BLOCK + 7),  # the buffer holds 100 bytes: buffered, then flushed
        os.urandom(BLOCK),  # buffer empty again: direct
        os.urandom(3 * BLOCK + 1),  # direct, one PUT
        bytearray(os.urandom(BLOCK)),  # not bytes: buffered
        memoryview(os.urandom(BLOCK)),
        os.urandom(5),
    ]
    with fs.open(f"{name}/mixed.bin", "wb", block_size=BLOCK) as f:
        for part in parts:
            f.write(part)
        assert f.tell() == sum(len(p) for p in parts)
    assert standin.read_file(space_id, "mixed.bin") == b"".join(bytes(p) for p in parts)


def test_standin_whole_blocks_append_and_exclusive(fs, standin, space):
    """``ab``: a direct block lands after what was there; ``xb``: created once, then
    FileExistsError."""
    name, space_id = space
    standin.write_file(space_id, "log.bin", b"head")
    block = os.urandom(BLOCK)
    with fs.open(f"{name}/log.bin", "ab", block_size=BLOCK) as f:
        f.write(block)
        f.write(b"tail")
    assert standin.read_file(space_id, "log.bin") == b"head" + block + b"tail"

    with fs.open(f"{name}/new.bin", "xb", block_size=BLOCK) as f:
        f.write(block)
    assert standin.read_file(space_id, "new.bin") == block
    with pytest.raises(FileExistsError):
        fs.open(f"{name}/new.bin", "xb", block_size=BLOCK)


def test_standin_direct_write_after_close_is_refused(fs, space):
    name, _ = space
    f = fs.open(f"{name}/closed.bin", "wb", block_size=BLOCK)
    f.write(os.urandom(BLOCK))
    f.close()
    with pytest.raises(ValueError):
        f.write(os.urandom(BLOCK))
