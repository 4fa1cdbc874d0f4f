"""The report table as GitHub Markdown: bold best, <ins> second, ✗ failed, footnotes below."""

from __future__ import annotations

from harness.reports.headers import markdown_escape, metric_header
from harness.reports.labels import format_value
from harness.reports.layout import Entry, Table

SYMBOLS = {"failed": "✗", "unavailable": "n/a", "missing": "–"}


def markdown_cell(entry: Entry) -> str:
    if entry.kind in SYMBOLS:
        text = SYMBOLS[entry.kind]
    else:
        text = entry.mean + (f" ± {entry.std}" if entry.std else "")
        text = {1: f"**{text}**", 2: f"<ins>{text}</ins>"}.get(entry.rank, text)
        if entry.n is not None:
            text += f" (n={entry.n})"
    return text + (f"<sup>{entry.note}</sup>" if entry.note else "")


def row_labels(table: Table) -> list[list[str]]:
    """Axis values per row; a leading value equal to the row above is left blank (grouping)."""
    labels: list[list[str]] = []
    previous: tuple = ()
    for key in table.rows:
        shown = [format_value(v) for v in key] or ["all runs"]
        for depth in range(len(key) - 1):
            if key[:depth + 1] == previous[:depth + 1]:
                shown[depth] = ""
        labels.append(shown)
        previous = key
    return labels


def caption(table: Table, name: str) -> str:
    spread = f"mean ± std over {table.seeds} seeds" if table.seeds > 1 else "one seed per cell"
    symbols = {entry.kind for line in table.entries for entry in line}
    parts = [f"**{name}**: {spread}", "best in **bold**, second <ins>underlined</ins>"]
    parts += [f"{SYMBOLS['failed']} all runs failed"] if "failed" in symbols else []
    parts += [f"{SYMBOLS['missing']} not run or not recorded"] if "missing" in symbols else []
    return "; ".join(parts) + "."


def markdown_table(table: Table, name: str) -> str:
    """Caption, table and footnotes, ready to paste into index.md or a README."""
    if not table.rows:
        return f"**{name}**: no trial runs recorded in this sweep.\n"
    prefix = [table.labels[axis] for axis in table.row_axes] or [""]
    header = prefix + [(f"{table.group_label(column.group)} " if column.group else "")
                       + metric_header(column.metric) for column in table.columns]
    body = [labels + [markdown_cell(entry) for entry in line]
            for labels, line in zip(row_labels(table), table.entries, strict=True)]
    lines = [[markdown_escape(text) for text in line] for line in [header, *body]]
    widths = [max(3, *(len(line[i]) for line in lines)) for i in range(len(header))]
    rule = [":" + "-" * (w - 1) if i < len(prefix) else ":" + "-" * (w - 2) + ":"
            for i, w in enumerate(widths)]
    rendered = [_row(lines[0], widths), _row(rule, widths)]
    rendered += [_row(line, widths) for line in lines[1:]]
    notes = [f"- <sup>{marker}</sup> {markdown_escape(text)}" for marker, text in table.notes]
    footer = ["", *notes] if notes else []
    return "\n".join([caption(table, name), "", *rendered, *footer]) + "\n"


def _row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
