"""Run one CARMIN stand-in execution with Boutiques: ``bosh exec launch --no-container``.

Started by `tests.carmin_standin.executions` as its own process (its own process group,
so a kill stops the tool too), in the execution's work folder::

    python runner.py DESCRIPTOR INVOCATION RESULT_JSON

It calls Boutiques' ``bosh`` entry point with ``exec launch --no-container
--skip-data-collection`` (what the ``bosh`` command runs), because its Python form hands
back the tool's stdout, stderr, exit code and output files apart, where the command
prints them mixed in one summary. It writes ``stdout.txt``, ``stderr.txt`` and
RESULT_JSON: ``{"exit_code", "outputs": {output id: [paths]}, "missing": [...], "error"}``
(``error`` is set when Boutiques refused the descriptor or the invocation).
This file imports nothing from the test suite: it runs with the work folder as cwd.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    descriptor, invocation, result_file = argv
    result: dict = {"exit_code": None, "outputs": {}, "missing": [], "error": None}
    try:
        from boutiques import bosh

        out = bosh(
            ["exec", "launch", "--no-container", "--skip-data-collection", descriptor, invocation]
        )
    except BaseException as e:  # bosh raises SystemExit and its own errors
        message = str(e).strip().splitlines()
        result["error"] = message[0] if message else type(e).__name__
        Path("stdout.txt").write_text("")
        Path("stderr.txt").write_text("\n".join(message) + "\n")
    else:
        Path("stdout.txt").write_text(out.stdout or "")
        Path("stderr.txt").write_text(out.stderr or "")
        result["exit_code"] = out.exit_code
        for f in out.output_files:
            result["outputs"].setdefault(f.boutiques_name, []).append(os.path.abspath(f.file_name))
        result["missing"] = [f.boutiques_name for f in out.missing_files]
    tmp = result_file + ".part"
    Path(tmp).write_text(json.dumps(result))
    os.replace(tmp, result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
