"""Accessibility checks of the hub's pages with axe-core, in the browser the tests drive.

axe-core (npm, pinned by ``tests/axe/package-lock.json``, installed by ``make``) is
injected into the page as it stands and run there; a test fails on any *serious* or
*critical* violation, with a list that says which rule, on which elements and why, so
the fix can be found without re-running the page by hand. Minor and moderate findings
are not failures (axe reports many that are matters of taste), but they are kept in
the result for a test that wants to look at them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = ("serious", "critical")


def axe_script() -> Path:
    """The pinned axe.min.js; a missing install says how to get it."""
    if not AXE_JS.is_file():
        raise FileNotFoundError(
            f"{AXE_JS} is missing: run `make test-e2e` (or `npm ci --prefix tests/axe`) to "
            "install the pinned axe-core"
        )
    return AXE_JS


def run_axe(page: Any, context: str | None = None) -> dict[str, Any]:
    """axe's full result for the page (or the part that ``context``, a CSS selector, picks)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script()))
    return page.evaluate(
        """async (context) => {
            const options = {resultTypes: ['violations']};
            return await window.axe.run(context || document, options);
        }""",
        context,
    )


def describe(violations: list[dict[str, Any]]) -> str:
    """Violations as lines a person can act on: rule, impact, help, then each element."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"][:10]:
            target = " ".join(str(t) for t in node.get("target", []))
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    {target}: {summary}")
        if len(v["nodes"]) > 10:
            lines.append(f"    ... and {len(v['nodes']) - 10} more elements")
    return "\n".join(lines)


def assert_accessible(page: Any, context: str | None = None) -> dict[str, Any]:
    """Fail on serious or critical axe violations of the page as it is now; return axe's result.

    Call it once the page shows what is to be checked (wait for that first): axe
    checks the DOM at the moment it runs, including colours of the active theme.
    """
    result = run_axe(page, context)
    failing = [v for v in result["violations"] if v.get("impact") in FAILING_IMPACTS]
    if failing:
        raise AssertionError(
            f"accessibility: {len(failing)} serious or critical axe violation(s) on "
            f"{page.url}:\n{describe(failing)}"
        )
    return result
