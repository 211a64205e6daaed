"""Server-hours per VO from the usage log (egi_hub.spawner.usage_report)."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest

from egi_hub.spawner.usage_report import UsageReport, hours_by_vo, parse_record

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ACCESS = "vo.access.egi.eu"
NOTEBOOKS = "vo.notebooks.egi.eu"


def iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def record(event, user, start, stop=None, *, vo=ACCESS, server="") -> str:
    stop_text = iso(stop) if stop is not None else None
    fields = {"event": event, "user": user, "server": server, "vo": vo, "profile": "small"}
    fields |= {"cpu": 1.0, "memory": 2**30, "gpu": 0, "start": iso(start), "stop": stop_text}
    return json.dumps(fields)


def run_lines(user, start, stop, **kw) -> list[str]:
    """A start line and its stop line, as QuotaPolicy writes them."""
    return [record("start", user, start, **kw), record("stop", user, start, stop, **kw)]


def write(path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def hours_of(path, user, running=None, now=NOW) -> dict:
    report = UsageReport(str(path))
    report.refresh(now)
    return hours_by_vo(report.runs(user), now, running)


def test_finished_runs_are_summed_per_vo(tmp_path):
    log = tmp_path / "usage.jsonl"
    write(log, run_lines("alice", NOW - timedelta(days=2, hours=3), NOW - timedelta(days=2)))
    write(log, run_lines("alice", NOW - timedelta(hours=5), NOW - timedelta(hours=4)))
    write(log, run_lines("alice", NOW - timedelta(hours=2), NOW, vo=NOTEBOOKS, server="gpu"))
    assert hours_of(log, "alice") == pytest.approx({ACCESS: 4.0, NOTEBOOKS: 2.0})


def test_runs_are_clipped_to_the_last_30_days(tmp_path):
    log = tmp_path / "usage.jsonl"
    # Entirely before the window: not counted. Across its start: only the part inside.
    write(log, run_lines("alice", NOW - timedelta(days=40), NOW - timedelta(days=35)))
    write(log, run_lines("alice", NOW - timedelta(days=31), NOW - timedelta(days=29)))
    assert hours_of(log, "alice") == pytest.approx({ACCESS: 24.0})


def test_a_running_server_counts_until_now(tmp_path):
    log = tmp_path / "usage.jsonl"
    started = NOW - timedelta(hours=3)
    write(log, [record("start", "alice", started)])
    assert hours_of(log, "alice") == pytest.approx({ACCESS: 3.0})
    # Told what runs: the same run counts, a start whose server is gone does not.
    assert hours_of(log, "alice", running={"": started}) == pytest.approx({ACCESS: 3.0})
    assert hours_of(log, "alice", running={}) == {}
    # Started 40 days ago and still running: only the window's 30 days.
    write(log, [record("start", "alice", NOW - timedelta(days=40), server="long")])
    assert hours_of(log, "alice", running={"long": NOW - timedelta(days=40)}) == pytest.approx(
        {ACCESS: 720.0}
    )


def test_malformed_lines_are_skipped(tmp_path):
    log = tmp_path / "usage.jsonl"
    good = run_lines("alice", NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    bad = [
        "not json",
        "[1, 2]",
        json.dumps({"event": "stop", "user": "alice"}),
        record("stop", "alice", NOW, NOW - timedelta(hours=1)),  # stops before it starts
        record("stop", "alice", NOW - timedelta(hours=1), None),
        record("begin", "alice", NOW - timedelta(hours=1)),
        json.dumps({"event": "start", "user": 7, "server": "", "vo": None, "start": iso(NOW)}),
        json.dumps({"event": "start", "user": "alice", "server": "", "vo": 3, "start": iso(NOW)}),
        '{"event": "start", "user": "alice", "start": "yesterday"}',
    ]
    write(log, [good[0], *bad, good[1], ""])
    report = UsageReport(str(log))
    report.refresh(NOW)
    assert report.skipped == len(bad)
    assert hours_by_vo(report.runs("alice"), NOW, {}) == pytest.approx({ACCESS: 1.0})


def test_other_users_are_not_counted(tmp_path):
    log = tmp_path / "usage.jsonl"
    write(log, run_lines("alice", NOW - timedelta(hours=1), NOW))
    write(log, run_lines("bob", NOW - timedelta(hours=7), NOW, vo=NOTEBOOKS))
    write(log, [record("start", "bob", NOW - timedelta(hours=2), server="x")])
    write(log, run_lines("alice2", NOW - timedelta(hours=9), NOW))
    assert hours_of(log, "alice") == pytest.approx({ACCESS: 1.0})
    assert hours_of(log, "bob") == pytest.approx({NOTEBOOKS: 7.0, ACCESS: 2.0})
    assert hours_of(log, "carol") == {}


def test_no_vo_is_its_own_bucket(tmp_path):
    log = tmp_path / "usage.jsonl"
    write(log, run_lines("carol", NOW - timedelta(hours=1), NOW, vo=None))
    assert hours_of(log, "carol") == pytest.approx({None: 1.0})


def test_the_log_is_read_incrementally(tmp_path, monkeypatch):
    log = tmp_path / "usage.jsonl"
    start = NOW - timedelta(hours=2)
    write(log, [record("start", "alice", start)])
    report = UsageReport(str(log))
    report.refresh(NOW)
    first = report._offset
    assert first == log.stat().st_size
    # A half-written line waits for its newline.
    with open(log, "a", encoding="utf-8") as f:
        f.write(record("stop", "alice", start, NOW - timedelta(hours=1))[:20])
    report.refresh(NOW)
    assert report._offset == first
    assert hours_by_vo(report.runs("alice"), NOW, {}) == {}
    # Unchanged (size and mtime): the file is not opened at all.
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    report.refresh(NOW)
    assert opened == []
    monkeypatch.undo()
    # The rest of the line arrives: read from where it stopped, not from the start.
    with open(log, "a", encoding="utf-8") as f:
        f.write(record("stop", "alice", start, NOW - timedelta(hours=1))[20:] + "\n")
    report.refresh(NOW)
    assert report.skipped == 0
    assert hours_by_vo(report.runs("alice"), NOW, {}) == pytest.approx({ACCESS: 1.0})


def test_a_replaced_or_truncated_log_is_read_again(tmp_path):
    log = tmp_path / "usage.jsonl"
    write(log, run_lines("alice", NOW - timedelta(hours=3), NOW))
    report = UsageReport(str(log))
    report.refresh(NOW)
    assert hours_by_vo(report.runs("alice"), NOW) == pytest.approx({ACCESS: 3.0})
    fresh = tmp_path / "fresh.jsonl"
    write(fresh, run_lines("alice", NOW - timedelta(hours=1), NOW))
    os.replace(fresh, log)
    report.refresh(NOW)
    assert hours_by_vo(report.runs("alice"), NOW) == pytest.approx({ACCESS: 1.0})
    log.unlink()
    report.refresh(NOW)
    assert report.runs("alice") == []


def test_runs_that_ended_before_the_window_are_forgotten(tmp_path):
    log = tmp_path / "usage.jsonl"
    write(log, run_lines("alice", NOW - timedelta(days=60), NOW - timedelta(days=59)))
    write(log, run_lines("old", NOW - timedelta(days=60), NOW - timedelta(days=59)))
    write(log, run_lines("alice", NOW - timedelta(hours=1), NOW))
    report = UsageReport(str(log))
    report.refresh(NOW)
    assert len(report.runs("alice")) == 1
    assert "old" not in report._closed


def test_parse_record_reads_naive_times_as_utc():
    line = json.dumps(
        {"event": "start", "user": "a", "server": "", "vo": None, "start": "2025-06-01T10:00:00"}
    )
    event, run = parse_record(line)
    assert event == "start" and run.start == datetime(2025, 6, 1, 10, tzinfo=UTC)


async def test_hours_reads_in_a_thread(tmp_path, monkeypatch):
    log = tmp_path / "usage.jsonl"
    write(log, run_lines("alice", NOW - timedelta(hours=1), NOW))
    threads = []
    report = UsageReport(str(log))
    real = report.refresh

    def refresh(now=None):
        threads.append(threading.current_thread())
        real(now)

    monkeypatch.setattr(report, "refresh", refresh)
    assert await report.hours("alice", {}, NOW) == pytest.approx({ACCESS: 1.0})
    assert threads and threads[0] is not threading.main_thread()


def test_an_over_long_unfinished_line_is_skipped_not_held_over(tmp_path, monkeypatch):
    """A torn line with no newline is held for the next read only up to MAX_LINE;
    past it the read skips to its newline (counted as malformed), and what follows
    is read as usual."""
    from egi_hub.spawner import usage_report

    monkeypatch.setattr(usage_report, "MAX_LINE", 1000)
    monkeypatch.setattr(usage_report, "CHUNK", 256)
    log = tmp_path / "usage.jsonl"
    write(log, run_lines("alice", NOW - timedelta(hours=3), NOW - timedelta(hours=2)))
    with open(log, "a") as f:
        f.write("x" * 3000)  # torn: no newline yet
    report = UsageReport(str(log))
    report.refresh(NOW)
    assert report.skipped == 1
    assert report._offset == os.path.getsize(log)  # nothing held over
    with open(log, "a") as f:
        f.write("y" * 2000 + "\n")  # the rest of the long line, then good lines
    write(log, run_lines("alice", NOW - timedelta(hours=1), NOW))
    report.refresh(NOW)
    assert report.skipped == 1  # the same line, not counted twice
    assert hours_by_vo(report.runs("alice"), NOW) == {ACCESS: 2.0}
    assert report._offset == os.path.getsize(log)


def test_a_short_unfinished_line_is_held_over_and_read_once_whole(tmp_path):
    log = tmp_path / "usage.jsonl"
    line = record("stop", "alice", NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    with open(log, "a") as f:
        f.write(line[:40])
    report = UsageReport(str(log))
    report.refresh(NOW)
    assert report.skipped == 0 and report._offset == 0
    with open(log, "a") as f:
        f.write(line[40:] + "\n")
    report.refresh(NOW)
    assert report.skipped == 0
    assert hours_by_vo(report.runs("alice"), NOW) == {ACCESS: 1.0}


def test_starts_without_a_stop_stay_bounded(tmp_path):
    """One unfinished run per server (a later start supersedes it); forgotten once the
    user's page shows the server not running with that start, or when too old."""
    log = tmp_path / "usage.jsonl"
    starts = [NOW - timedelta(hours=h) for h in (50, 40, 30)]
    write(log, [record("start", "alice", at) for at in starts])  # the hub died twice
    write(log, [record("start", "alice", NOW - timedelta(hours=2), server="gpu")])
    write(log, [record("start", "bob", NOW - timedelta(days=200))])
    report = UsageReport(str(log))
    report.refresh(NOW)
    assert sorted((r.user, r.server, r.start) for r in report.runs("alice")) == [
        ("alice", "", starts[-1]),
        ("alice", "gpu", NOW - timedelta(hours=2)),
    ]
    assert report.runs("bob") == []  # older than MAX_OPEN
    # The page: only "gpu" runs now; the default server's start is forgotten.
    report.forget_stopped("alice", {"gpu": NOW - timedelta(hours=2)})
    assert [r.server for r in report.runs("alice")] == ["gpu"]
    # Its stop line, written late, still brings the run back whole.
    write(log, [record("stop", "alice", starts[-1], NOW - timedelta(hours=29))])
    report.refresh(NOW)
    assert hours_by_vo(report.runs("alice"), NOW, {"gpu": NOW - timedelta(hours=2)}) == {
        ACCESS: 3.0
    }


async def test_hours_forgets_the_users_stopped_starts(tmp_path):
    log = tmp_path / "usage.jsonl"
    write(log, [record("start", "alice", NOW - timedelta(hours=5))])
    report = UsageReport(str(log))
    assert await report.hours("alice", {}, NOW) == {}
    assert report.runs("alice") == []
    assert await report.hours("alice", None, NOW) == {}
