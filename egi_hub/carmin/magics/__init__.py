"""The ``%carmin`` magics: CARMIN platforms (VIP first) from a notebook cell.

``%load_ext egi_hub.carmin``, then ``%carmin platform``, ``pipelines [FILTER]``,
``describe PIPELINE``, ``launch PIPELINE [--name N] [--param K=V ...] [--wait]`` (or
``%%carmin launch PIPELINE`` with YAML/JSON parameters in the cell), ``status [ID]``,
``results ID [--to DIR]``, ``kill ID``, ``history``; ``-o VAR`` on each keeps the
result object in VAR. ``%carmin SUBCOMMAND --help`` says more.

Why a thin layer: everything about the platform is the client's (`CarminClient` for
what a cell waits for, `AsyncCarminClient` for background following), input checks are
`check_inputs` against the pipeline's Boutiques descriptor. This module reads the line
(`args`), sends inputs first (`sources`), shows things (`views`), follows executions
(`follow`) and saves results in a folder of their own, archives unpacked (`results`). The client
is configured as in scripts (``$CARMIN_URL``, the API key from the environment or the
key file) and made again when those variables change. A user's mistake or a
platform's refusal is one ``UsageError`` line (no traceback, never the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path as LocalPath
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from egi_hub.carmin.aclient import AsyncCarminClient
from egi_hub.carmin.archives import ArchiveError
from egi_hub.carmin.client import CarminClient
from egi_hub.carmin.errors import PIPELINES_HINT, CarminError
from egi_hub.carmin.inputs import check_inputs, descriptor_from_pipeline
from egi_hub.carmin.magics.args import Command, MagicArgumentError, MagicHelp, parse_command
from egi_hub.carmin.magics.follow import FAILED, Run
from egi_hub.carmin.magics.results import save_results
from egi_hub.carmin.magics.sources import file_inputs, plan_sources, upload_dir, upload_sources
from egi_hub.carmin.magics.views import (
    Board,
    StatusView,
    Table,
    TextBlock,
    Throttle,
    executions_table,
    human_size,
    parameters_table,
    pipelines_table,
    platform_table,
)
from egi_hub.carmin.models import Execution, Path, Pipeline

__all__ = ["CarminMagics", "load_ipython_extension", "unload_ipython_extension"]

CONFIG_VARIABLES = (
    "CARMIN_URL",
    "CARMIN_API_KEY",
    "VIP_API_KEY",
    "CARMIN_API_KEY_FILE",
    "CARMIN_TOKEN",
    "CARMIN_TOKEN_ORIGINS",
)


def _config_signature() -> str:
    """A digest of the configuration variables (the key itself is not kept)."""
    text = "\0".join(os.environ.get(name, "") for name in CONFIG_VARIABLES)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


@magics_class
class CarminMagics(Magics):
    """``%carmin`` and ``%%carmin`` (see the module docstring)."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self._signature = ""
        self._client: CarminClient | None = None
        self._aclient: AsyncCarminClient | None = None
        self.runs: dict[str, Run] = {}
        self.client_options: dict[str, Any] = {}  # extra CarminClient keywords (tests)

    # -- clients ----------------------------------------------------------------------

    def _fresh(self) -> None:
        signature = _config_signature()
        if signature != self._signature:
            self.close_clients()
            self._signature = signature

    @property
    def client(self) -> CarminClient:
        self._fresh()
        if self._client is None:
            self._client = CarminClient(**self.client_options)
        return self._client

    @property
    def aclient(self) -> AsyncCarminClient:
        self._fresh()
        if self._aclient is None:
            options = {k: v for k, v in self.client_options.items() if k != "transport"}
            self._aclient = AsyncCarminClient(**options)
        return self._aclient

    def close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._aclient is not None:
            aclient, self._aclient = self._aclient, None
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to close on
                asyncio.get_running_loop().create_task(aclient.aclose())

    def stop_following(self) -> None:
        for run in self.runs.values():
            if run.task is not None and not run.task.done():
                run.task.cancel()

    # -- the magic --------------------------------------------------------------------

    @line_cell_magic
    def carmin(self, line: str, cell: str | None = None) -> None:
        """CARMIN platforms (VIP): ``%carmin --help`` lists the subcommands."""
        try:
            command = parse_command(line, cell)
            result = getattr(self, f"_do_{command.name}")(command)
        except MagicHelp as shown:
            print(str(shown).rstrip())
            return
        except (MagicArgumentError, CarminError) as e:
            raise UsageError(f"carmin: {e}") from None
        except OSError as e:  # local files: --to folders, inputs
            where = f" {e.filename}" if e.filename else ""
            raise UsageError(f"carmin: {e.strerror or e}{where}") from None
        self._keep(command, result)

    def _keep(self, command: Command, value: Any) -> None:
        """``-o VAR``: the result object in the user's namespace."""
        if command.output:
            self.shell.user_ns[command.output] = value

    # -- subcommands ------------------------------------------------------------------

    def _do_platform(self, command: Command) -> Any:
        platform = self.client.platform()
        display(platform_table(platform, self.client.url, self.client.detect_dialect()))
        return platform

    def _do_pipelines(self, command: Command) -> list[Pipeline]:
        pipelines = self.client.pipelines()
        if command.filter:
            wanted = command.filter.lower()
            pipelines = [
                p for p in pipelines if wanted in p.identifier.lower() or wanted in p.name.lower()
            ]
        display(pipelines_table(pipelines, command.filter))
        return pipelines

    def _do_describe(self, command: Command) -> dict[str, Any]:
        assert command.pipeline is not None
        pipeline = find_pipeline(self.client, command.pipeline)
        descriptor = self.descriptor(pipeline)
        display(parameters_table(pipeline, descriptor, platform_parameters(pipeline, descriptor)))
        return descriptor

    def descriptor(self, pipeline: Pipeline) -> dict[str, Any]:
        """The pipeline's Boutiques descriptor; one made from its CARMIN parameters
        where the platform serves none."""
        try:
            return self.client.boutiques(pipeline.identifier)
        except CarminError as e:
            if e.status in (404, 405, 406, 501):
                return descriptor_from_pipeline(pipeline)
            raise

    def _do_launch(self, command: Command) -> Run:
        assert command.pipeline is not None
        client = self.client
        pipeline = find_pipeline(client, command.pipeline)
        descriptor = self.descriptor(pipeline)
        extra = platform_parameters(pipeline, descriptor)
        inputs = check_inputs(descriptor, command.params, extra=extra)
        for param in pipeline.parameters:  # VIP's results-directory: its default
            if param.name in extra and param.name not in inputs and not param.optional:
                if param.default is not None:
                    inputs[param.name] = param.default
        sources = plan_sources(inputs, file_inputs(descriptor))
        base = upload_dir() if sources else ""
        board: Board | None = None

        def progress(source: Any) -> Callable[[int, int | None], None]:
            nonlocal board
            label = f"uploading {source.name} ({source.parameter})"
            if board is None:
                board = Board(TextBlock(label))
            shown = board
            return Throttle(lambda text: shown.update(TextBlock(text)), label)

        inputs = upload_sources(client, inputs, sources, base, progress)
        execution = client.create_execution(pipeline.identifier, inputs, command.run_name)
        view = StatusView(execution, "launched")
        if board is None:
            board = Board(view)
        run = Run(execution, board)
        run.show()
        self.runs[execution.identifier] = run
        self._keep(command, run)  # kept even when waiting ends in an error
        if command.wait:
            self._wait(run)
        else:
            run.start(self.aclient)
            if run.task is None and not execution.status.is_final:
                run.note = f"not followed here (no event loop): %carmin status {run.identifier}"
                run.show()
        return run

    def _wait(self, run: Run) -> None:
        try:
            run.follow_sync(self.client)
        except KeyboardInterrupt:
            run.note = "stopped waiting; it goes on"
            run.show()
            run.start(self.aclient)
            return
        if run.status in FAILED:
            raise UsageError(
                f"carmin: execution {run.identifier} ended {run.status.value} (stderr above)"
            )

    def _do_status(self, command: Command) -> Execution | list[Execution]:
        client = self.client
        if not command.identifier:
            executions = [client.execution(i) for i in self.runs]
            for execution in executions:
                self.runs[execution.identifier].observe(execution)
            table = executions_table(executions)
            if not executions:
                table.note = "no execution launched in this session (see %carmin history)"
            display(table)
            return executions
        execution = client.execution(command.identifier)
        run = self.runs.get(execution.identifier)
        if run is not None:
            run.observe(execution)
        stderr = ""
        if execution.status in FAILED:
            with contextlib.suppress(CarminError):
                stderr = client.stderr(execution.identifier)
        display(StatusView(execution, stderr=stderr))
        return execution

    def _do_kill(self, command: Command) -> Execution:
        assert command.identifier is not None
        client = self.client
        client.kill(command.identifier)
        execution = client.execution(command.identifier)
        run = self.runs.get(execution.identifier)
        if run is not None:
            run.observe(execution)
        note = "" if execution.status.is_final else "kill asked"
        display(StatusView(execution, note))
        return execution

    def _do_history(self, command: Command) -> list[Execution]:
        executions = self.client.executions()
        executions.sort(key=lambda e: (e.start_date is not None, e.start_date), reverse=True)
        shown = executions[: command.limit]
        display(executions_table(shown))
        return shown

    def _do_results(self, command: Command) -> list[Path] | list[LocalPath]:
        assert command.identifier is not None
        client = self.client
        results = client.results(command.identifier)
        if not command.to:
            rows = [(r.name, human_size(r.size), r.platform_path) for r in results]
            note = "" if rows else "no result files (yet?)"
            display(Table(["file", "size", "platform path"], rows, note=note))
            return results
        board = Board(TextBlock(f"downloading {len(results)} file(s)"))
        saved = save_results(client, results, LocalPath(command.to), command.identifier, board)
        if saved.refused:
            self._keep(command, saved.written)
            more = len(saved.refused) - 1
            raise ArchiveError(saved.refused[0] + (f" (and {more} more)" if more else ""))
        return saved.written


def find_pipeline(client: CarminClient, given: str) -> Pipeline:
    """The pipeline whose id is ``given``, else the only one of that name."""
    pipelines = client.pipelines()
    for pipeline in pipelines:
        if pipeline.identifier == given:
            return pipeline
    named = [p for p in pipelines if p.name == given]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(p.identifier for p in named[:10])
        raise CarminError(None, None, f"{given!r} names several pipelines: {ids}", "give its id")
    try:
        return client.pipeline(given)  # not listed: maybe hidden, ask the platform
    except CarminError as e:
        if e.status in (400, 404):
            raise CarminError(
                e.status, e.code, f"no pipeline {given!r} here ({e.message})", PIPELINES_HINT
            ) from None
        raise


def platform_parameters(pipeline: Pipeline, descriptor: dict[str, Any]) -> list[str]:
    """The pipeline's CARMIN parameters its descriptor lacks (VIP's results-directory)."""
    known = {i.get("id") for i in descriptor.get("inputs") or [] if isinstance(i, dict)}
    return [p.name for p in pipeline.parameters if not p.returned and p.name not in known]


_LOADED: dict[int, CarminMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext egi_hub.carmin``: register ``%carmin`` and ``%%carmin``."""
    magics = CarminMagics(ipython)
    ipython.register_magics(magics)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext egi_hub.carmin``: stop following, close the clients."""
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    magics.stop_following()
    magics.close_clients()
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("carmin", None)
