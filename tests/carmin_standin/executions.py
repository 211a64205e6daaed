"""The CARMIN stand-in's executions, run for real with Boutiques on this machine.

An execution is created ``Initializing`` (the spec: ``play`` starts it; VIP's dialect
starts it at once). Starting it stages its File inputs from the data area into a work
folder (a vanished input makes it ``InitializationFailed``), then runs ``runner.py``
(``bosh exec launch --no-container``) as a process group of its own, watched by a
thread: ``Running`` while the tool runs, then ``Finished`` (exit 0: output files moved
to ``<results location>/<execution id>/`` in the data area), ``ExecutionFailed``
(another exit code: its stderr kept, its code as ``errorCode``), or ``Killed`` (kill,
delete or its ``timeout``). Only the stand-in's own processes are ever signalled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DataArea, DataError
from .pipelines import RESULTS_DIRECTORY, Pipeline

RUNNER = Path(__file__).with_name("runner.py")
ENDED = {"Finished", "InitializationFailed", "ExecutionFailed", "Killed"}


@dataclass
class Execution:
    identifier: str
    name: str
    pipeline: Pipeline
    user: str
    input_values: dict[str, Any]
    invocation: dict[str, Any]
    files: dict[str, list[str]]  # File input id -> platform paths
    results_location: str
    workdir: Path
    study: str | None = None
    timeout: int = 0
    status: str = "Initializing"
    submitted: float = field(default_factory=time.time)
    start: float | None = None
    end: float | None = None
    error_code: int | None = None
    returned: dict[str, list[str]] = field(default_factory=dict)  # output id -> paths
    proc: subprocess.Popen | None = None
    kill_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def results_dir(self) -> str:
        return f"{self.results_location.rstrip('/')}/{self.identifier}"

    def log(self, which: str) -> str:
        path = self.workdir / "run" / f"{which}.txt"
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Engine:
    """Creates, starts, kills and forgets executions; thread-safe."""

    def __init__(self, data: DataArea, work_root: Path, dialect: str) -> None:
        self.data = data
        self.work_root = work_root
        self.dialect = dialect
        self.executions: dict[str, Execution] = {}
        self.lock = threading.Lock()
        work_root.mkdir(parents=True, exist_ok=True)

    def new_id(self) -> str:
        if self.dialect == "vip":
            return "workflow-" + secrets.token_hex(3).upper()
        return "execution-" + secrets.token_hex(6)

    def create(
        self,
        *,
        user: str,
        pipeline: Pipeline,
        name: str,
        input_values: dict[str, Any],
        invocation: dict[str, Any],
        files: dict[str, list[str]],
        results_location: str,
        study: str | None,
        timeout: int,
    ) -> Execution:
        ident = self.new_id()
        ex = Execution(
            identifier=ident,
            name=name,
            pipeline=pipeline,
            user=user,
            input_values=dict(input_values),
            invocation=invocation,
            files=files,
            results_location=results_location,
            workdir=self.work_root / ident,
            study=study,
            timeout=timeout,
        )
        with self.lock:
            self.executions[ident] = ex
        return ex

    def of_user(self, user: str, study: str | None = None) -> list[Execution]:
        with self.lock:
            found = [e for e in self.executions.values() if e.user == user]
        if study is not None:
            found = [e for e in found if e.study == study]
        return sorted(found, key=lambda e: e.submitted, reverse=True)

    def running(self, user: str) -> int:
        with self.lock:
            return sum(
                1 for e in self.executions.values() if e.user == user and e.status == "Running"
            )

    # -- life cycle --------------------------------------------------------------
    def play(self, ex: Execution) -> None:
        """Stage the inputs and start the tool (the caller checked the status)."""
        with self.lock:
            ex.status = "Running"
            ex.start = time.time()
        try:
            invocation = dict(ex.invocation)
            inputs = ex.workdir / "inputs"
            for ident, paths in ex.files.items():
                local = []
                for n, platform_path in enumerate(paths):
                    src = self.data.existing(platform_path)
                    dest = inputs / ident / str(n) / src.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if src.is_dir():
                        shutil.copytree(src, dest)
                    else:
                        shutil.copyfile(src, dest)
                    local.append(str(dest))
                invocation[ident] = local if isinstance(invocation[ident], list) else local[0]
            run = ex.workdir / "run"
            run.mkdir(parents=True, exist_ok=True)
            (ex.workdir / "invocation.json").write_text(json.dumps(invocation))
            log = (ex.workdir / "runner.log").open("wb")
            ex.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(RUNNER),
                    str(ex.pipeline.descriptor_path),
                    str(ex.workdir / "invocation.json"),
                    str(ex.workdir / "result.json"),
                ],
                cwd=run,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
            log.close()
            if ex.kill_requested:  # killed while its inputs were staged
                self._signal(ex)
        except (DataError, OSError) as e:
            (ex.workdir / "run").mkdir(parents=True, exist_ok=True)
            (ex.workdir / "run" / "stderr.txt").write_text(f"input staging failed: {e}\n")
            self._end(ex, "InitializationFailed")
            return
        threading.Thread(target=self._watch, args=(ex,), daemon=True).start()

    def _watch(self, ex: Execution) -> None:
        assert ex.proc is not None
        try:
            ex.proc.wait(timeout=ex.timeout or None)
        except subprocess.TimeoutExpired:
            ex.kill_requested = True
            self._signal(ex)
        if ex.kill_requested:
            self._end(ex, "Killed")
            return
        try:
            result = json.loads((ex.workdir / "result.json").read_text())
        except (OSError, ValueError):
            self._end(ex, "ExecutionFailed", error_code=ex.proc.returncode)
            return
        if result["error"]:
            self._end(ex, "InitializationFailed")
        elif result["exit_code"] != 0:
            self._end(ex, "ExecutionFailed", error_code=result["exit_code"])
        else:
            try:
                returned = self._collect(ex, result["outputs"])
            except (DataError, OSError) as e:
                with (ex.workdir / "run" / "stderr.txt").open("a") as err:
                    err.write(f"collecting the results failed: {e}\n")
                self._end(ex, "ExecutionFailed")
                return
            self._end(ex, "Finished", returned=returned)

    def _collect(self, ex: Execution, outputs: dict[str, list[str]]) -> dict[str, list[str]]:
        run = (ex.workdir / "run").resolve()
        target_dir = ex.results_dir
        if not self.data.exists(ex.results_location):
            self.data.mkdir(ex.results_location, parents=True)
        if not self.data.exists(target_dir):
            self.data.mkdir(target_dir)
        target = self.data.local(target_dir)
        returned: dict[str, list[str]] = {}
        for out in ex.pipeline.outputs():
            returned[out["id"]] = []
        for ident, paths in outputs.items():
            for p in paths:
                src = Path(p).resolve()
                rel = src.relative_to(run) if run in src.parents else Path(src.name)
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), dest)
                returned.setdefault(ident, []).append(self.data.platform(dest))
        return returned

    def _end(self, ex: Execution, status: str, **extra: Any) -> None:
        with self.lock:
            if ex.status in ENDED:
                return
            ex.status = status
            ex.end = time.time()
            ex.error_code = extra.get("error_code")
            ex.returned = extra.get("returned", {})
        ex.done.set()

    def _signal(self, ex: Execution) -> None:
        """SIGTERM the execution's own process group, SIGKILL after 5 s."""
        proc = ex.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def kill(self, ex: Execution) -> None:
        ex.kill_requested = True
        if ex.status == "Initializing" or ex.proc is None:
            self._end(ex, "Killed")
            return
        self._signal(ex)
        ex.done.wait(timeout=10)

    def update(self, ex: Execution, name: str | None, timeout: int | None) -> None:
        with self.lock:
            if name is not None:
                ex.name = name
            if timeout is not None:
                ex.timeout = timeout

    def delete(self, ex: Execution, delete_files: bool) -> None:
        if ex.status not in ENDED:
            self.kill(ex)
        with self.lock:
            self.executions.pop(ex.identifier, None)
        shutil.rmtree(ex.workdir, ignore_errors=True)
        if delete_files and self.data.exists(ex.results_dir):
            self.data.delete(ex.results_dir)

    def stop_all(self) -> None:
        with self.lock:
            live = [e for e in self.executions.values() if e.status not in ENDED]
        for ex in live:
            self.kill(ex)


def results_location_of(body: dict[str, Any], home: str, dialect: str) -> str:
    """Where results go: VIP's ``resultsLocation`` or ``results-directory`` input, else
    the user's home."""
    values = body.get("inputValues")
    given = values.get(RESULTS_DIRECTORY) if isinstance(values, dict) else None
    for value in (body.get("resultsLocation"), given):
        if isinstance(value, str) and value.startswith("/"):
            return value
    return home
