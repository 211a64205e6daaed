"""The ``%carmin`` docs and example notebook stay in step with the code.

Why: the pages (docs/user/carmin.md, docs/admin/carmin.md) and the VIP example notebook
(docs/examples/carmin-vip.ipynb) show magics, options, environment variables and client
calls that users copy; when the code changes, these tests name what went stale. The
notebook must be valid nbformat 4 without outputs, and its cells Python once IPython
has rewritten the ``%`` lines; every ``%carmin`` line of the notebook and of the pages'
code blocks must parse with the magics' own parser (subcommands and options); every
``CARMIN_*``/``VIP_*``/``EGI_*`` variable the pages name must be a string the code uses,
and every ``CARMIN_*``/``VIP_*`` name the client and magics use must be in the user page;
every ``call(`` the user page names must exist.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

import egi_hub.carmin
from egi_hub.carmin import CarminClient
from egi_hub.carmin.magics.args import SUBCOMMANDS, MagicArgumentError, MagicHelp, parse_command
from egi_hub.carmin.magics.follow import Run

ROOT = Path(__file__).resolve().parents[2]
USER_PAGE = ROOT / "docs" / "user" / "carmin.md"
ADMIN_PAGE = ROOT / "docs" / "admin" / "carmin.md"
NOTEBOOK = ROOT / "docs" / "examples" / "carmin-vip.ipynb"
PACKAGE = ROOT / "egi_hub"
CARMIN = PACKAGE / "carmin"

ENV_NAME = re.compile(r"\b(?:CARMIN|VIP|EGI)_[A-Z0-9_]*[A-Z0-9]\b")
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)


def code_cells() -> list[str]:
    return [c.source for c in notebook().cells if c.cell_type == "code"]


def fences(page: Path) -> list[tuple[str, str]]:
    """(language, text) of each fenced code block of ``page``."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text("utf-8"))]


def invocations(code: str) -> Iterator[tuple[str, str | None]]:
    """(line, cell body or None) of each ``%carmin``/``%%carmin`` use in ``code``."""
    if code.startswith("%%carmin"):
        first, _, body = code.partition("\n")
        yield first.removeprefix("%%carmin").strip(), body
        return
    for line in code.splitlines():
        stripped = line.strip()
        if stripped == "%carmin" or stripped.startswith("%carmin "):
            yield stripped.removeprefix("%carmin").strip(), None


def string_constants(folder: Path) -> set[str]:
    """Every string literal of the Python modules under ``folder``, but the names listed
    in ``__all__`` (``"VIP_URL"`` there is a constant, not a variable)."""
    found: set[str] = set()
    exported: set[str] = set()
    for module in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
            ):
                exported |= {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant)}
    return found - exported


def test_the_notebook_is_valid_nbformat_4_without_outputs():
    nb = notebook()
    assert nb.nbformat == 4
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the example notebook has no code cell"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_the_notebooks_cells_compile_under_ipythons_transformer():
    manager = TransformerManager()
    for number, source in enumerate(code_cells(), 1):
        python = manager.transform_cell(source)
        try:
            compile(python, f"<code cell {number}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as e:
            pytest.fail(f"code cell {number} is not valid IPython: {e}\n{source}")


def test_the_notebook_runs_the_full_vip_example():
    used = {
        parse_command(line, body).name for src in code_cells() for line, body in invocations(src)
    }
    assert {"platform", "pipelines", "describe", "launch", "results"} <= used
    assert any(src.startswith("%load_ext egi_hub.carmin") for src in code_cells())
    assert any("await run.wait(" in src for src in code_cells())


def _check_invocation(where: str, line: str, body: str | None) -> str:
    try:
        command = parse_command(line, body)
    except MagicHelp:
        pytest.fail(f"{where}: %carmin {line!r} only prints help")
    except MagicArgumentError as e:
        pytest.fail(f"{where}: %carmin {line!r} does not parse: {e}")
    assert command.name in SUBCOMMANDS
    return command.name


def test_every_carmin_line_of_the_notebook_parses():
    for number, source in enumerate(code_cells(), 1):
        for line, body in invocations(source):
            _check_invocation(f"notebook code cell {number}", line, body)


def test_every_carmin_line_in_the_pages_code_blocks_parses():
    shown: set[str] = set()
    for page in (USER_PAGE, ADMIN_PAGE):
        for language, block in fences(page):
            if language in ("", "python"):
                for line, body in invocations(block):
                    shown.add(_check_invocation(str(page.relative_to(ROOT)), line, body))
    missing = set(SUBCOMMANDS) - shown
    assert not missing, f"docs/user/carmin.md shows no example of: {sorted(missing)}"


def test_the_user_pages_python_blocks_compile():
    manager = TransformerManager()
    for language, block in fences(USER_PAGE):
        if language == "python":
            compile(
                manager.transform_cell(block),
                "<docs/user/carmin.md>",
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )


def test_every_environment_variable_the_docs_name_is_in_the_code():
    strings = string_constants(PACKAGE)
    texts = {str(p.relative_to(ROOT)): p.read_text("utf-8") for p in (USER_PAGE, ADMIN_PAGE)}
    texts[str(NOTEBOOK.relative_to(ROOT))] = "\n".join(c.source for c in notebook().cells)
    for name, text in texts.items():
        for variable in sorted(set(ENV_NAME.findall(text))):
            assert variable in strings, f"{name} names {variable}, which egi_hub never reads"


def test_every_carmin_variable_the_code_reads_is_documented():
    page = USER_PAGE.read_text("utf-8")
    used = {s for s in string_constants(CARMIN) if re.fullmatch(r"(?:CARMIN|VIP)_[A-Z_]+", s)}
    assert {"CARMIN_URL", "CARMIN_API_KEY", "VIP_API_KEY", "CARMIN_TOKEN"} <= used
    for variable in sorted(used):
        assert f"`{variable}" in page or f"`${variable}" in page, f"{variable} is undocumented"


def test_every_call_the_user_page_names_exists():
    page = USER_PAGE.read_text("utf-8")
    public = set(egi_hub.carmin.__all__)
    for name in sorted(set(re.findall(r"`(\w+)\(", page))):
        assert name in public or hasattr(CarminClient, name) or hasattr(Run, name), (
            f"docs/user/carmin.md names {name}(), which egi_hub.carmin does not have"
        )
    for name in set(re.findall(r"\bvip\.(\w+)\(", page)):
        assert hasattr(CarminClient, name), f"the script example calls CarminClient.{name}"
