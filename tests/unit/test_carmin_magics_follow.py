"""Following executions, showing them and fetching results (egi_hub.carmin.magics), with
fake clients: Ready is not the end, a failure shows its stderr tail, a lost platform is
said once, the board (display handle or ipywidgets widget) is updated in place, and
everything a platform sent is escaped."""

from __future__ import annotations

import asyncio
import io
import tarfile

import pytest

from egi_hub.carmin.errors import CarminError
from egi_hub.carmin.magics import views
from egi_hub.carmin.magics.follow import Backoff, Run
from egi_hub.carmin.magics.views import (
    Board,
    StatusView,
    Table,
    Throttle,
    executions_table,
    parameters_table,
)
from egi_hub.carmin.models import (
    Execution,
    ExecutionStatus,
    Path,
    Pipeline,
    PipelineParameter,
)


def execution(status: str, ident: str = "e1") -> Execution:
    return Execution.from_json(
        {"identifier": ident, "name": "run", "pipelineIdentifier": "wc/1.0", "status": status}
    )


class FakeBoard:
    def __init__(self):
        self.shown = []

    def update(self, view):
        self.shown.append(repr(view))


class SyncClient:
    def __init__(self, statuses, stderr="", fail_at=None):
        self.statuses = list(statuses)
        self.stderr_text = stderr
        self.fail_at = fail_at
        self.asked = 0

    def execution(self, ident):
        self.asked += 1
        if self.fail_at == self.asked:
            raise CarminError(None, None, "the platform did not answer after 4 attempts")
        return execution(self.statuses.pop(0), ident)

    def stderr(self, ident):
        return self.stderr_text


class AsyncClient(SyncClient):
    async def execution(self, ident):  # type: ignore[override]
        return SyncClient.execution(self, ident)

    async def stderr(self, ident):  # type: ignore[override]
        return self.stderr_text


def test_backoff_grows_to_its_cap_and_resets_on_change():
    b = Backoff(first=1, factor=2, cap=5)
    assert [b.next(False) for _ in range(5)] == [1, 2, 4, 5, 5]
    assert b.next(True) == 1 and b.next(False) == 2


def test_ready_is_not_the_end_and_a_failure_shows_its_stderr_tail():
    board = FakeBoard()
    stderr = "".join(f"line {i}\n" for i in range(100)) + "<b>boom</b>\n"
    client = SyncClient(["Ready", "Running", "Running", "ExecutionFailed"], stderr=stderr)
    run = Run(execution("Initializing"), board)
    run.follow_sync(client, sleep=lambda s: None)
    assert run.status is ExecutionStatus.EXECUTION_FAILED and client.asked == 4
    assert run.history == ["Initializing", "Ready", "Running", "ExecutionFailed"]
    assert "<b>boom</b>" in board.shown[-1] and "line 99" in board.shown[-1]
    assert "line 50" not in board.shown[-1]  # the tail only
    assert "&lt;b&gt;boom&lt;/b&gt;" in run.view()._repr_html_()


def test_sync_follow_gives_up_at_its_timeout_and_says_so():
    run = Run(execution("Running"), FakeBoard())
    run.follow_sync(SyncClient(["Running"] * 100), timeout=0.0, sleep=lambda s: None)
    assert not run.done and "%carmin status" in repr(run)


def test_a_lost_platform_is_said_on_the_board():
    board = FakeBoard()
    run = Run(execution("Running"), board)
    with pytest.raises(CarminError):
        run.follow_sync(SyncClient(["Running"], fail_at=2), sleep=lambda s: None)
    assert run.done and "stopped following" in board.shown[-1]
    assert "%carmin status e1" in board.shown[-1]


async def test_background_follow_on_the_running_loop():
    board = FakeBoard()
    run = Run(execution("Running"), board, Backoff(first=0.001, cap=0.002))
    task = run.start(AsyncClient(["Running", "Ready", "Running", "Finished"]))
    assert task is not None and not run.done
    done = await run.wait(5)
    assert done.status is ExecutionStatus.FINISHED
    assert run.history == ["Running", "Ready", "Running", "Finished"]
    assert "Finished" in board.shown[-1] and "stderr" not in board.shown[-1]
    await task


async def test_background_follow_never_raises_and_can_be_cancelled():
    run = Run(execution("Running"), FakeBoard(), Backoff(first=0.001, cap=0.002))
    run.start(AsyncClient(["Running"], fail_at=2))
    await run.wait(5)
    assert "stopped following" in run.lost
    slow = Run(execution("Running"), FakeBoard(), Backoff(first=10))
    task = slow.start(AsyncClient(["Running"]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "unloaded" in slow.lost


def test_no_loop_no_background_task():
    run = Run(execution("Running"))
    assert run.start(AsyncClient(["Finished"])) is None
    with pytest.raises(RuntimeError):
        asyncio.run(run.wait(1))


def test_tables_escape_and_shorten():
    table = Table(["a", "b"], [["<script>x</script>", "y" * 500]], title="<t>", note="n&")
    page = table._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;t&gt;" in page
    assert "n&amp;" in page
    assert max(len(line) for line in str(table).splitlines()) < 120
    assert "no execution" in str(executions_table([]))


def test_parameters_table_from_a_descriptor_and_the_platform_extras():
    pipeline = Pipeline(
        "wc/1.0",
        "wc",
        "1.0",
        parameters=[PipelineParameter("results-directory", "File", False, False, "/vip/Home")],
    )
    descriptor = {
        "description": "counts",
        "inputs": [
            {"id": "n", "type": "Number", "integer": True, "minimum": 1, "optional": True},
            {"id": "mode", "type": "String", "value-choices": ["a", "b"], "default-value": "a"},
            {"id": "files", "type": "File", "list": True},
            "junk",
        ],
    }
    text = str(parameters_table(pipeline, descriptor, ["results-directory"]))
    assert "Integer" in text and ">= 1" in text and "one of a, b" in text
    assert "list of File" in text and "results-directory" in text and "/vip/Home" in text
    assert "counts" in text


def test_status_view_text_and_html():
    view = StatusView(execution("Finished"), "done")
    assert repr(view) == "execution e1 (wc/1.0, run): Finished · done"
    assert "#1a7f37" in view._repr_html_()
    assert repr(StatusView(None, "uploading", label="x")) == "x: uploading"


def test_throttle_limits_updates_but_always_shows_the_end():
    shown = []
    progress = Throttle(shown.append, "uploading f", interval=3600)
    for done in range(0, 101, 10):
        progress(done * 1024, 100 * 1024)
    assert shown == ["uploading f: 0 B of 100.0 KiB", "uploading f: 100.0 KiB of 100.0 KiB"]


def test_board_with_a_display_handle(monkeypatch):
    calls = []

    class Handle:
        def update(self, view):
            calls.append(("update", repr(view)))

    def fake_display(view, display_id=False):
        calls.append(("display", repr(view), display_id))
        return Handle()

    monkeypatch.setattr("IPython.display.display", fake_display)
    board = Board(StatusView(None, "one"), widget=False)
    board.update(StatusView(None, "two"))
    assert calls == [("display", "one", True), ("update", "two")]


def test_board_with_a_widget(monkeypatch):
    import ipywidgets  # a test extra: missing, this fails rather than skips

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda w, **kw: shown.append(w))
    monkeypatch.delenv("CARMIN_WIDGETS", raising=False)
    assert views._widgets_wanted()
    board = Board(StatusView(execution("Running"), "following"))
    assert isinstance(shown[0], ipywidgets.HTML) and board.widget is shown[0]
    board.update(StatusView(execution("Finished")))
    assert "Finished" in board.widget.value and len(shown) == 1  # updated, not shown again
    monkeypatch.setenv("CARMIN_WIDGETS", "0")
    assert not views._widgets_wanted()


class ResultsClient:
    """A platform with two results, one of them a tar archive."""

    def __init__(self, archive: bytes):
        self.archive = archive

    def results(self, ident):
        return [
            Path("/vip/Home/e/out.tar.gz", False, 10),
            Path("/vip/Home/e/n.txt", False, 2),
            Path("/vip/Home/e/sub/n.txt", False, 2),
        ]

    def download(self, source, dest, progress=None):
        dest.write_bytes(self.archive if dest.name.endswith(".tar.gz") else b"42")
        if progress:
            progress(2, 2)
        return dest


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _magics_with(client, monkeypatch):
    from egi_hub.carmin import magics as carmin_magics

    monkeypatch.setattr(carmin_magics, "display", lambda *a, **kw: None)
    monkeypatch.setattr("IPython.display.display", lambda *a, **kw: None)
    magics = carmin_magics.CarminMagics(None)
    magics._signature = carmin_magics._config_signature()
    magics._client = client
    magics.shell = type("Shell", (), {"user_ns": {}})()
    return magics


def test_results_downloaded_and_archives_extracted(tmp_path, monkeypatch):
    archive = _tar({"res/a.txt": b"A", "res/deep/b.txt": b"B"})
    magics = _magics_with(ResultsClient(archive), monkeypatch)
    magics.carmin(f"results e --to '{tmp_path}/out' -o files")
    out = tmp_path / "out" / "e"  # a folder of the execution's own
    assert (out / "out" / "res" / "deep" / "b.txt").read_bytes() == b"B"
    assert (out / "n.txt").read_bytes() == b"42" and (out / "2-n.txt").read_bytes() == b"42"
    names = sorted(str(p.relative_to(out)) for p in magics.shell.user_ns["files"])
    assert names == ["2-n.txt", "n.txt", "out.tar.gz", "out/res/a.txt", "out/res/deep/b.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["2-n.txt", "n.txt", "out", "out.tar.gz"]
    magics.carmin(f"results e --to '{tmp_path}/out'")  # again: beside, not over
    assert (tmp_path / "out" / "e-2" / "n.txt").read_bytes() == b"42"


def test_a_hostile_archive_is_one_usage_error(tmp_path, monkeypatch):
    from IPython.core.error import UsageError

    magics = _magics_with(ResultsClient(_tar({"../escape.txt": b"x"})), monkeypatch)
    with pytest.raises(UsageError, match=r"carmin: out.tar.gz not unpacked: archive member '\.\./"):
        magics.carmin(f"results e --to {tmp_path}/out -o files")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "escape.txt").exists()
    assert not (tmp_path / "out" / "e" / "out").exists()  # its folder removed whole
    assert (tmp_path / "out" / "e" / "n.txt").read_bytes() == b"42"  # the rest is there
    assert len(magics.shell.user_ns["files"]) == 3


def test_long_stderr_lines_are_cut_for_display():
    view = StatusView(execution("ExecutionFailed"), stderr="x" * 100_000 + "\nlast\n")
    assert view.stderr_tail.splitlines()[-1] == "last"
    assert len(view.stderr_tail) < 400 and view.stderr_tail.splitlines()[0].endswith("…")
