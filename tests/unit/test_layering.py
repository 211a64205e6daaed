"""Dependencies point down (design §2): hub code never imports the notebook side.

Static, so it runs in the unit lane: it follows every import statement of the hub
modules (top level, inside functions, under TYPE_CHECKING) through egi-hub's own source
files, importing nothing. `tests/integration/test_packaging.py` checks a real import
in a fresh interpreter as well.
"""

from __future__ import annotations

import ast
import tomllib
from collections import deque
from pathlib import Path

from tests.layering import HUB_MODULES

REPO = Path(__file__).resolve().parents[2]


def notebook_side(module: str) -> bool:
    return module in ("egi_hub.singleuser", "egi_hub.token", "egi_hub.carmin") or (
        module.startswith(("egi_hub.singleuser.", "egi_hub.carmin."))
    )


def package_dirs() -> dict[str, Path]:
    """``{package: folder}`` from pyproject's setuptools ``package-dir`` mapping."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: REPO / folder for name, folder in mapping.items()}


def source_of(module: str, dirs: dict[str, Path]) -> Path | None:
    """The file defining ``module`` (``x.py`` or ``x/__init__.py``), if egi-hub has one."""
    prefix = max(
        (p for p in dirs if module == p or module.startswith(p + ".")), key=len, default=""
    )
    if not prefix:
        return None
    base = dirs[prefix].joinpath(*module[len(prefix) :].split(".")[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imports_of(module: str, path: Path, dirs: dict[str, Path]) -> set[str]:
    """egi-hub modules that importing ``module`` may import (with their parent packages)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # ``from pkg import name`` imports pkg.name when it is a module.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    modules = set()
    for name in found:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if candidate.startswith("egi_hub") and source_of(candidate, dirs):
                modules.add(candidate)
    return modules


def import_chains(roots: list[str], dirs: dict[str, Path] | None = None) -> dict[str, list[str]]:
    """Every egi-hub module reachable from ``roots``, with one import chain to it."""
    dirs = dirs or package_dirs()
    chains = {root: [root] for root in roots}
    queue = deque(roots)
    while queue:
        module = queue.popleft()
        path = source_of(module, dirs)
        assert path is not None, f"no source file for {module}"
        for imported in sorted(imports_of(module, path, dirs)):
            if imported not in chains:
                chains[imported] = [*chains[module], imported]
                queue.append(imported)
    return chains


def test_hub_modules_never_import_the_notebook_side():
    chains = import_chains(HUB_MODULES)
    assert len(chains) > len(HUB_MODULES)  # the walk did follow imports
    bad = [" -> ".join(chain) for module, chain in chains.items() if notebook_side(module)]
    assert not bad, "hub code imports the notebook side:\n" + "\n".join(bad)


def test_the_walk_follows_relative_lazy_and_from_imports(tmp_path):
    """The checker itself, on a made-up package laid out like egi-hub's."""
    core, hub = tmp_path / "egi_hub", tmp_path / "spawner"
    for folder in (core / "singleuser", hub):
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "shared.py").write_text("def f():\n    from . import singleuser\n")
    (core / "singleuser" / "keeper.py").write_text("")
    (hub / "local.py").write_text("from egi_hub import shared\nfrom .util import x\n")
    (hub / "util.py").write_text("from ..singleuser.keeper import y\n")  # relative, 2 up
    dirs = {"egi_hub": core, "egi_hub.spawner": hub}
    chains = import_chains(["egi_hub.spawner.local"], dirs)
    assert chains["egi_hub.singleuser"] == [
        "egi_hub.spawner.local",
        "egi_hub.shared",
        "egi_hub.singleuser",
    ]
    assert chains["egi_hub.singleuser.keeper"][-2:] == [
        "egi_hub.spawner.util",  # ``..singleuser.keeper`` seen from egi_hub.spawner.util
        "egi_hub.singleuser.keeper",
    ]
    assert notebook_side("egi_hub.singleuser.keeper")
    assert not notebook_side("egi_hub.singleuser_config")
