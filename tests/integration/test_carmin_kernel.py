"""The ``%carmin`` magics in a real IPython kernel (ipykernel, driven cell by cell with
nbclient) against the CARMIN server stand-in (tests/carmin_standin, a real HTTP server
running Boutiques pipelines), in the spec's dialect and in VIP's.

The kernel gets ``CARMIN_URL`` and ``CARMIN_API_KEY`` from its environment, as a user's
server would. Between cells the test reads the stand-in's request log: a refused launch
must have sent nothing (no upload, no execution)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.carmin_standin import start_carmin_standin

KEY = "standin-key"


class Kernel:
    """One kernel executing cells added one at a time to a notebook."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.nb = nbformat.v4.new_notebook()
        self.client = NotebookClient(
            self.nb,
            timeout=120,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(cwd)}},
        )
        self._setup = self.client.setup_kernel(env=env)
        self._setup.__enter__()

    def close(self) -> None:
        self._setup.__exit__(None, None, None)

    def run(self, code: str) -> Cell:
        cell = nbformat.v4.new_code_cell(code)
        self.nb.cells.append(cell)
        started = time.monotonic()
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return Cell(cell, time.monotonic() - started)


class Cell:
    def __init__(self, cell, seconds: float) -> None:
        self.outputs = cell.outputs
        self.seconds = seconds

    def stream(self, name: str) -> str:
        return "".join(o.text for o in self.outputs if o.output_type == "stream" and o.name == name)

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")

    def data(self, kind: str = "text/plain") -> str:
        return "\n".join(
            o.data[kind]
            for o in self.outputs
            if o.output_type in ("display_data", "execute_result") and kind in o.data
        )

    @property
    def errors(self) -> list:
        return [o for o in self.outputs if o.output_type == "error"]

    def text(self) -> str:
        return "\n".join([self.stdout, self.stderr, self.data()])


@pytest.fixture(scope="module", params=["carmin", "vip"])
def standin(request, tmp_path_factory):
    running = start_carmin_standin(tmp_path_factory.mktemp("standin"), dialect=request.param)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory, standin) -> Path:
    folder = tmp_path_factory.mktemp("notebook")
    (folder / "données é.txt").write_text("un deux trois quatre cinq\n", encoding="utf-8")
    (folder / "words.txt").write_text("alpha beta\n")
    return folder


@pytest.fixture(scope="module")
def kernel(standin, work):
    env = {**os.environ, "CARMIN_URL": standin.url, "CARMIN_API_KEY": KEY}
    env.pop("VIP_API_KEY", None)
    env["CARMIN_WIDGETS"] = "0"  # the display-handle path; the widget one is unit-tested
    running = Kernel(work, env)
    loaded = running.run("%load_ext egi_hub.carmin")
    assert not loaded.errors and not loaded.stderr, loaded.text()
    yield running
    running.close()


def ident(standin, name: str) -> str:
    return f"{name}/1.0" if standin.dialect == "vip" else name


def test_platform_pipelines_and_describe(standin, kernel):
    platform = kernel.run("%carmin platform")
    assert standin.url in platform.data() and standin.dialect in platform.data()
    listed = kernel.run("%carmin pipelines -o found")
    assert "<table>" in listed.data("text/html")
    for name in ("wordcount", "fails", "sleeps"):
        assert ident(standin, name) in listed.data()
    only = kernel.run("%carmin pipelines word\nprint(len(found))")
    assert "fails" not in only.data() and "wordcount" in only.data()
    assert only.stdout.strip() == "3"
    described = kernel.run("%carmin describe wordcount -o desc\nprint(desc['name'])")
    assert described.stdout.strip() == "wordcount"
    text, page = described.data(), described.data("text/html")
    assert "input_file" in text and "output_name" in text and "counts.txt" in text
    assert "<td style='text-align:left'>input_file</td>" in page
    if standin.dialect == "vip":
        assert "results-directory" in text  # the platform's own parameter
    unknown = kernel.run("%carmin describe nosuch")
    assert (
        unknown.stderr.startswith("UsageError: carmin:") and "%carmin pipelines" in unknown.stderr
    )
    assert len(unknown.stderr.strip().splitlines()) == 1 and not unknown.errors


def test_launch_with_a_local_non_ascii_file_to_results_on_disk(standin, kernel, work):
    launched = kernel.run(
        '%carmin launch wordcount --name "compter les mots" --param "input_file=données é.txt" '
        "--param output_name=n.txt --wait -o run\n"
        "print(run.identifier, run.status.value, run.history)"
    )
    assert not launched.errors and "UsageError" not in launched.stderr, launched.text()
    identifier, status = launched.stdout.split()[:2]
    assert status == "Finished"
    assert "Finished" in launched.data() and "compter les mots" in launched.data()
    uploaded = [r for r in standin.requests if r.method == "PUT" and "donn" in r.path]
    assert len(uploaded) == 1
    inputs = standin.execution(identifier).input_values
    assert inputs["input_file"].endswith("/données é.txt")
    assert standin.read_file(inputs["input_file"]) == b"un deux trois quatre cinq\n"

    status = kernel.run(f"%carmin status {identifier} -o e\nprint(e.status.value)")
    assert status.stdout.strip() == "Finished" and "Finished" in status.data()
    listed = kernel.run(f"%carmin results {identifier}")
    assert "n.txt" in listed.data()
    fetched = kernel.run(f"%carmin results {identifier} --to 'out put' -o files\nprint(files)")
    assert (work / "out put" / identifier / "n.txt").read_text().strip() == "5"
    assert "n.txt" in fetched.data() and "wrote 1 file(s)" in fetched.data()
    history = kernel.run("%carmin history")
    assert identifier in history.data()


def test_cell_body_launch_in_yaml_and_json(standin, kernel, work):
    yaml_cell = kernel.run(
        "%%carmin launch wordcount --wait -o r1\ninput_file: words.txt\noutput_name: y.txt\n"
    )
    assert "Finished" in yaml_cell.data(), yaml_cell.text()
    json_cell = kernel.run(
        "%%carmin launch wordcount --wait -o r2 --param output_name=j.txt\n"
        '{"input_file": "words.txt", "output_name": "ignored.txt"}'
    )
    assert "Finished" in json_cell.data(), json_cell.text()
    out = kernel.run("print(r2.identifier)").stdout.strip()
    assert standin.execution(out).input_values["output_name"] == "j.txt"
    bad = kernel.run("%%carmin launch wordcount\n[not, a, mapping]")
    assert "must map parameter names" in bad.stderr


def test_failing_tool_shows_its_stderr(standin, kernel):
    failed = kernel.run('%carmin launch fails --param "message=it broke badly" --wait -o f')
    assert "ExecutionFailed" in failed.data()
    assert "it broke badly" in failed.data() and "it broke badly" in failed.data("text/html")
    assert "ended ExecutionFailed" in failed.stderr and not failed.errors
    again = kernel.run("%carmin status {f.identifier}")
    assert "it broke badly" in again.data()


def test_unknown_or_bad_parameters_are_refused_before_anything_is_sent(standin, kernel):
    cases = [
        ("--param input_file=words.txt --param nope=1", "'nope': unknown parameter"),
        ("--param output_name=x", "'input_file': missing required File"),
        ("--param input_file=missing.txt", "no local file 'missing.txt'"),
        ("--param input_file=ftpx://h/f", "no filesystem for ftpx:// URLs"),
        ('--param "input_file=words.txt', "no closing quotation"),
    ]
    for args, message in cases:
        standin.clear_requests()
        refused = kernel.run(f"%carmin launch wordcount {args} -o never")
        assert message in refused.stderr, (args, refused.text())
        assert len(refused.stderr.strip().splitlines()) == 1 and not refused.errors
        assert standin.count("PUT") == 0 and standin.count("POST") == 0, args
        assert standin.count("DELETE") == 0
    assert "never" not in kernel.run("print(sorted(globals()))").stdout


def test_bad_api_key_is_one_clear_line(standin, kernel):
    out = kernel.run("import os\nos.environ['CARMIN_API_KEY'] = 'wrong-key-123'\n%carmin pipelines")
    kernel.run(f"os.environ['CARMIN_API_KEY'] = {KEY!r}")
    line = out.stderr.strip()
    assert line.startswith("UsageError: carmin: CARMIN") and "HTTP 401" in line, out.text()
    assert "CARMIN_API_KEY" in line and "wrong-key-123" not in out.text()
    assert len(line.splitlines()) == 1 and not out.errors
    assert "wordcount" in kernel.run("%carmin pipelines").data()


def test_the_kernel_stays_free_while_executions_are_followed(standin, kernel):
    launched = kernel.run("%carmin launch sleeps --param seconds=3 -o slow")
    assert launched.seconds < 5 and not launched.errors, launched.text()
    started = time.monotonic()
    free = kernel.run("print(slow.status.value, slow.done)")
    assert time.monotonic() - started < 2 and free.stdout.split()[1] == "False"
    killed_run = kernel.run("%carmin launch sleeps --param seconds=60 -o doomed")
    assert not killed_run.errors
    kernel.run("%carmin kill {doomed.identifier}")
    waited = kernel.run(
        "e1 = await slow.wait(60)\ne2 = await doomed.wait(60)\n"
        "print(e1.status.value, e2.status.value, slow.history)"
    )
    first, second = waited.stdout.split()[:2]
    assert (first, second) == ("Finished", "Killed"), waited.text()
    assert "Running" in waited.stdout or "Initializing" in waited.stdout  # seen before the end
    table = kernel.run("%carmin status -o mine\nprint(len(mine))")
    assert "Finished" in table.data() and "Killed" in table.data()


def test_too_many_running_executions_explained(tmp_path):
    standin = start_carmin_standin(tmp_path / "s", dialect="vip", max_running=1)
    env = {**os.environ, "CARMIN_URL": standin.url, "CARMIN_API_KEY": KEY, "CARMIN_WIDGETS": "0"}
    kernel = Kernel(tmp_path, env)
    try:
        kernel.run("%load_ext egi_hub.carmin")
        first = kernel.run("%carmin launch sleeps --param seconds=60 -o first")
        assert not first.errors and "UsageError" not in first.stderr, first.text()
        second = kernel.run("%carmin launch sleeps --param seconds=60")
        line = second.stderr.strip()
        assert "error 2001" in line or "error 2000" in line, line
        assert "too many running executions: wait for one to finish or kill one" in line
        assert len(line.splitlines()) == 1
        kernel.run("%carmin kill {first.identifier}")
        assert "Killed" in kernel.run("await first.wait(30); print(first.status.value)").stdout
    finally:
        kernel.close()
        standin.stop()
