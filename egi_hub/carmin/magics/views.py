"""What ``%carmin`` shows: tables and an execution's status, as HTML and as text.

Why objects with both ``_repr_html_`` and ``__repr__``: IPython sends both forms and the
frontend picks (JupyterLab shows HTML, a terminal or ``nbconvert --to script`` text), so
the same call suits every frontend. Everything a platform sent is escaped: pipeline
names, descriptions and stderr are hostile input.

A `Board` is a place on the page that changes: a display handle updated in place
(``display(..., display_id=True)``), or an ``ipywidgets.HTML`` widget when ipywidgets
can be imported (``$CARMIN_WIDGETS=0`` keeps the display handle). Updates come from the
kernel's event loop (a background follower) or from the cell itself (``--wait``,
transfers); `Throttle` keeps transfer progress to a few updates a second.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from egi_hub.carmin.models import Execution, ExecutionStatus, Pipeline, Platform

__all__ = [
    "Board",
    "StatusView",
    "Table",
    "TextBlock",
    "Throttle",
    "executions_table",
    "human_size",
    "parameters_table",
    "pipelines_table",
    "platform_table",
]

CELL_TEXT = 70  # characters of a text table's cell
STDERR_LINES = 20
STDERR_LINE = 300  # characters shown of one stderr line (a tool may print megabytes)


def _short(value: Any, limit: int = CELL_TEXT) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _date(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


class Table:
    """Rows under headers, with an optional title and note line."""

    def __init__(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        title: str = "",
        note: str = "",
    ) -> None:
        self.headers = list(headers)
        self.rows = [["" if c is None else str(c) for c in row] for row in rows]
        self.title = title
        self.note = note

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>"
            + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in r)
            + "</tr>"
            for r in self.rows
        )
        title = f"<b>{html.escape(self.title)}</b><br>" if self.title else ""
        note = f"<div>{html.escape(self.note)}</div>" if self.note else ""
        return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"

    def __str__(self) -> str:
        cells = [[_short(c) for c in row] for row in self.rows]
        widths = [len(h) for h in self.headers]
        for row in cells:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
        lines = [self.title] if self.title else []
        lines.append("  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=False)))
        lines.append("  ".join("-" * w for w in widths))
        for row in cells:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)))
        if self.note:
            lines.append(self.note)
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class TextBlock:
    """A few lines of text (HTML: preformatted)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return f"<pre style='margin:0'>{html.escape(self.text)}</pre>"

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)


def platform_table(platform: Platform, url: str, dialect: str) -> Table:
    rows = [
        ("name", platform.name),
        ("URL", url),
        ("dialect", dialect),
        ("API version", platform.api_version),
        ("modules", ", ".join(platform.modules)),
        ("description", platform.description),
        ("contact", platform.email),
        ("unsupported", ", ".join(platform.unsupported_methods)),
    ]
    return Table(["property", "value"], [r for r in rows if r[1]], title="CARMIN platform")


def pipelines_table(pipelines: Sequence[Pipeline], wanted: str | None = None) -> Table:
    rows = [(p.identifier, p.name, p.version, _short(p.description, 100)) for p in pipelines]
    note = "" if rows else (f"no pipeline matches {wanted!r}" if wanted else "no pipeline")
    return Table(["id", "name", "version", "description"], rows, note=note)


def _spec_type(spec: Mapping[str, Any]) -> str:
    kind = str(spec.get("type", "String"))
    if kind == "Number" and spec.get("integer"):
        kind = "Integer"
    return f"list of {kind}" if spec.get("list") else kind


def _constraints(spec: Mapping[str, Any]) -> str:
    parts = []
    if isinstance(spec.get("value-choices"), list):
        parts.append("one of " + ", ".join(str(c) for c in spec["value-choices"][:10]))
    for key, word in (("minimum", ">="), ("maximum", "<=")):
        if key in spec:
            parts.append(f"{word} {spec[key]}")
    return "; ".join(parts)


def parameters_table(
    pipeline: Pipeline, descriptor: Mapping[str, Any], extra: Iterable[str] = ()
) -> Table:
    """A pipeline's parameters from its Boutiques descriptor (and the platform's own
    ``extra`` ones, such as VIP's ``results-directory``)."""
    rows = []
    for spec in descriptor.get("inputs") or []:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("id"), str):
            continue
        required = not spec.get("optional") and "default-value" not in spec
        rows.append(
            (
                spec["id"],
                _spec_type(spec),
                "yes" if required else "no",
                "" if "default-value" not in spec else spec["default-value"],
                _short(spec.get("description") or spec.get("name") or "", 100),
                _constraints(spec),
            )
        )
    by_name = {p.name: p for p in pipeline.parameters}
    for name in extra:
        param = by_name.get(name)
        rows.append(
            (
                name,
                param.type if param else "String",
                "no",
                "" if not param or param.default is None else param.default,
                _short(param.description if param else "", 100) + " (the platform's)",
                "",
            )
        )
    title = f"{pipeline.identifier}: {pipeline.name} {pipeline.version}".strip()
    description = descriptor.get("description") or pipeline.description
    return Table(
        ["parameter", "type", "required", "default", "description", "accepts"],
        rows,
        title=title,
        note=_short(description, 300) if description else "",
    )


def executions_table(executions: Sequence[Execution]) -> Table:
    rows = [
        (e.identifier, e.name, e.pipeline, e.status.value, _date(e.start_date)) for e in executions
    ]
    return Table(
        ["id", "name", "pipeline", "status", "started (UTC)"],
        rows,
        note="" if rows else "no execution",
    )


_COLOURS = {
    ExecutionStatus.FINISHED: "#1a7f37",
    ExecutionStatus.EXECUTION_FAILED: "#cf222e",
    ExecutionStatus.INITIALIZATION_FAILED: "#cf222e",
    ExecutionStatus.KILLED: "#9a6700",
}


class StatusView:
    """One execution's status line, a note (what is going on), the stderr tail of a
    failed one."""

    def __init__(
        self,
        execution: Execution | None,
        note: str = "",
        stderr: str = "",
        label: str = "",
    ) -> None:
        self.execution = execution
        self.note = note
        self.label = label
        lines = stderr.rstrip("\n").splitlines()[-STDERR_LINES:] if stderr else []
        self.stderr_tail = "\n".join(_cut(line, STDERR_LINE) for line in lines)

    def headline(self) -> str:
        e = self.execution
        if e is None:
            return f"{self.label}: {self.note}" if self.label else self.note
        head = f"execution {e.identifier} ({e.pipeline}"
        head += f", {e.name})" if e.name else ")"
        return f"{head}: {e.status.value}" + (f" · {self.note}" if self.note else "")

    def __repr__(self) -> str:
        text = self.headline()
        if self.stderr_tail:
            text += "\nstderr (last lines):\n" + self.stderr_tail
        return text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        colour = _COLOURS.get(self.execution.status, "") if self.execution else ""
        style = f" style='color:{colour}'" if colour else ""
        out = f"<div{style}><b>{html.escape(self.headline())}</b></div>"
        if self.stderr_tail:
            out += (
                "<div>stderr (last lines):</div><pre style='margin:0'>"
                + html.escape(self.stderr_tail)
                + "</pre>"
            )
        return out


def _widgets_wanted() -> bool:
    if os.environ.get("CARMIN_WIDGETS", "").strip().lower() in ("0", "no", "false", "off"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class Board:
    """A place on the page that is updated in place (see the module docstring)."""

    def __init__(self, view: Any, *, widget: bool | None = None) -> None:
        from IPython.display import display

        self.view = view
        self.widget: Any = None
        self.handle: Any = None
        if widget if widget is not None else _widgets_wanted():
            import ipywidgets

            self.widget = ipywidgets.HTML(value=_html_of(view))
            display(self.widget)
        else:
            self.handle = display(view, display_id=True)

    def update(self, view: Any) -> None:
        self.view = view
        if self.widget is not None:
            self.widget.value = _html_of(view)
        elif self.handle is not None:
            self.handle.update(view)


def _html_of(view: Any) -> str:
    to_html = getattr(view, "_repr_html_", None)
    return to_html() if to_html else f"<pre>{html.escape(repr(view))}</pre>"


class Throttle:
    """Calls ``show(text)`` for progress at most every ``interval`` seconds, and always
    for the last step (done == total)."""

    def __init__(self, show: Callable[[str], None], label: str, interval: float = 0.3) -> None:
        self.show = show
        self.label = label
        self.interval = interval
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if done != total and now - self._last < self.interval:
            return
        self._last = now
        if total:
            self.show(f"{self.label}: {human_size(done)} of {human_size(total)}")
        else:
            self.show(f"{self.label}: {human_size(done)}")
