"""The report table: runs grouped per configuration, mean ± std over seeds, best and second
ranked, failures as footnotes; written as Markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from harness.metrics.catalog import describe
from harness.reports.cells import Cell, describe_failures, make_cell
from harness.reports.context import (
    INTERVAL_NOTE,
    SIGNIFICANCE_NOTE,
    ReferenceLine,
    arm_interval,
    beats_real_data,
    indistinguishable,
    reference_lines,
)
from harness.reports.loading import is_number, plain
from harness.reports.settings import MetricSpec, ReportSettings

Key = tuple[Any, ...]
RANKED = ("value", "partial")
ARROWS = {"lower": "↓", "higher": "↑"}
LATEX_ARROWS = {"lower": r"$\downarrow$", "higher": r"$\uparrow$"}
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "…": r"\ldots{}"}


def short_names(keys: list[str]) -> dict[str, str]:
    """Axis key -> its last dotted segment (`stage1.K` -> `K`), unless two axes share it."""
    lasts = [key.rpartition(".")[2] for key in keys]
    return {key: last if lasts.count(last) == 1 else key
            for key, last in zip(keys, lasts, strict=True)}


def format_value(value: Any) -> str:
    """An axis value as a label: 0.5 -> '0.5', 1e-05 -> '1e-05', 256 -> '256'."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_number(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return ""
    text = f"{value:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text


def slug(text: str) -> str:
    """A file-name-safe form of a metric or axis name: `recon/psnr` -> `recon-psnr`."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-") or "x"


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")


def metric_header(metric: MetricSpec, latex: bool = False) -> str:
    """'PSNR (dB) ↑' or, for LaTeX, 'PSNR (dB) $\\uparrow$'."""
    label = latex_escape(metric.label) if latex else metric.label
    unit = latex_escape(metric.unit) if latex else metric.unit
    text = f"{label} ({unit})" if unit else label
    arrows = LATEX_ARROWS if latex else ARROWS
    return f"{text} {arrows[metric.better]}" if metric.better in arrows else text


def metric_decimals(metric: MetricSpec, cells: list[Cell]) -> int:
    """The metric's configured decimals, else enough to show the largest mean with four
    significant digits (0 to 6)."""
    if metric.decimals is not None:
        return metric.decimals
    finite = [abs(cell.mean) for cell in cells if math.isfinite(cell.mean) and cell.mean != 0]
    if not finite:
        return 3
    return max(0, min(6, 3 - math.floor(math.log10(max(finite)))))


def group_runs(runs: pd.DataFrame, axes: tuple[str, ...]) -> dict[Key, pd.DataFrame]:
    """The runs of each configuration, keyed by the values of `axes`."""
    keys = [tuple(plain(run.get(f"params.{axis}")) for axis in axes) for _, run in runs.iterrows()]
    groups: dict[Key, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    return {key: runs.iloc[positions] for key, positions in groups.items()}


def _sort_key(value: Any, preferred: tuple[str, ...]) -> tuple[Any, ...]:
    """YAML sweep order first, then numbers ascending, then text."""
    if str(value) in preferred:
        return (0, preferred.index(str(value)), 0.0, "")
    if is_number(value):
        return (1, 0, float(value), "")
    return (2, 0, 0.0, str(value))


def ordered_keys(keys: list[Key], axes: tuple[str, ...], settings: ReportSettings) -> list[Key]:
    orders = [settings.value_order(axis) for axis in axes]
    return sorted(set(keys), key=lambda key: tuple(
        _sort_key(value, order) for value, order in zip(key, orders, strict=True)))


@dataclass(frozen=True)
class Column:
    group: Key  # values of the column axes; () without column axes
    metric: MetricSpec
    decimals: int


@dataclass(frozen=True)
class Entry:
    """One cell as every format shows it."""

    cell: Cell
    mean: str = ""
    std: str = ""  # empty below two values
    n: int | None = None  # set where it differs from the table's usual number of seeds
    rank: int = 0  # 1 best, 2 second best, 0 neither
    note: str = ""  # footnote marker
    interval: str = ""  # "[low, high]": 95% interval (harness.reports.context.arm_interval)
    tie: bool = False  # the seeds cannot tell it from the best arm (context.indistinguishable)
    problem: bool = False  # better than real data beyond both uncertainties: not a result

    @property
    def kind(self) -> str:
        return self.cell.kind


@dataclass(frozen=True)
class Table:
    row_axes: tuple[str, ...]
    column_axes: tuple[str, ...]
    labels: dict[str, str]  # axis key -> header label
    rows: list[Key]
    groups: list[Key]
    columns: list[Column]
    entries: list[list[Entry]]  # [row][column]
    notes: list[tuple[str, str]] = field(default_factory=list)  # (marker, text)
    seeds: int = 0  # the usual number of values per cell
    references: list[tuple[str, list[Entry]]] = field(default_factory=list)  # (label, entries)
    beats_real_data: list[str] = field(default_factory=list)  # "row: metric" of each such cell

    def group_label(self, group: Key) -> str:
        return ", ".join(f"{self.labels[axis]}={format_value(value)}"
                         for axis, value in zip(self.column_axes, group, strict=True))


def _rank(entries: list[Entry], better: str | None, decimals: int) -> list[int]:
    """1 for the best displayed value, 2 for the second (ties share), else 0."""
    shown = [round(e.cell.mean, decimals) if e.kind in RANKED else None for e in entries]
    candidates = sorted({v for v in shown if v is not None}, reverse=better == "higher")
    if better is None or len(candidates) < 2:  # nothing to tell apart
        return [0] * len(entries)
    places = {value: place for place, value in enumerate(candidates[:2], start=1)}
    return [places.get(v, 0) if v is not None else 0 for v in shown]


BEATS_REAL_DATA = ("better than real data by more than both uncertainties: a protocol "
                   "problem, not a result")


def _note_text(entry: Entry) -> str:
    if entry.problem:
        return BEATS_REAL_DATA
    cell = entry.cell
    if cell.kind == "failed":
        return f"all {cell.runs} runs failed: {describe_failures(cell.failures)}"
    if cell.kind == "unavailable":
        return "unavailable: " + "; ".join(cell.unavailable)
    if cell.kind != "partial":
        return ""
    parts = [describe_failures(cell.failures)] if cell.failures else []
    lacking = cell.finished - cell.n
    if lacking:
        parts.append(f"{lacking} finished run{'s' if lacking > 1 else ''} did not record it"
                     + (f" ({'; '.join(cell.unavailable)})" if cell.unavailable else ""))
    return f"mean over {cell.n} of {cell.runs} runs; " + "; ".join(parts)


def _marker(number: int) -> str:
    return chr(ord("a") + number) if number < 26 else str(number + 1)


def _interval(bounds: tuple[float, float] | None, decimals: int) -> str:
    if bounds is None:
        return ""
    return f"[{format_number(bounds[0], decimals)}, {format_number(bounds[1], decimals)}]"


def build_table(runs: pd.DataFrame, settings: ReportSettings,
                references: pd.DataFrame | None = None) -> Table:
    """Rows = configurations of the row axes, columns = column-axis values x metrics; below
    them the sweep's reference rows (`references`, harness.reports.context)."""
    row_axes, column_axes = settings.rows, settings.columns
    groups = group_runs(runs, row_axes + column_axes)
    row_keys = ordered_keys([key[:len(row_axes)] for key in groups], row_axes, settings)
    group_keys = ordered_keys([key[len(row_axes):] for key in groups], column_axes, settings)
    pairs = [(group, metric) for group in group_keys for metric in settings.metrics]
    empty = runs.iloc[0:0]
    cells = [[make_cell(groups.get(row + group, empty), metric.name) for group, metric in pairs]
             for row in row_keys]
    decimals = {metric.name: metric_decimals(metric, [line[index] for line in cells
                                                      for index, (_, m) in enumerate(pairs)
                                                      if m.name == metric.name])
                for metric in settings.metrics}
    columns = [Column(group, metric, decimals[metric.name]) for group, metric in pairs]
    seeds = max((cell.n for line in cells for cell in line), default=0)
    # Intervals and significance for what the metric registry scores (FID, KID, LPIPS, ...),
    # not for bookkeeping columns such as parameter counts and timings.
    scored = [describe(column.metric.name) is not None for column in columns]
    entries = [[Entry(cell, format_number(cell.mean, column.decimals),
                      format_number(cell.std, column.decimals),
                      cell.n if cell.kind in RANKED and cell.n != seeds else None,
                      interval=_interval(arm_interval(cell), column.decimals)
                      if cell.kind in RANKED and is_scored else "")
                for cell, column, is_scored in zip(line, columns, scored, strict=True)]
               for line in cells]
    for index, column in enumerate(columns):
        ranks = _rank([line[index] for line in entries], column.metric.better, column.decimals)
        ties = indistinguishable([line[index].cell if line[index].kind in RANKED
                                  else replace(line[index].cell, values=())
                                  for line in entries],
                                 column.metric.better if scored[index] else None)
        for line, rank, tie in zip(entries, ranks, ties, strict=True):
            line[index] = replace(line[index], rank=rank, tie=tie)
    # one cell per table column, so that a reference line lines up with the arms' entries
    lines = reference_lines(references if references is not None else runs.iloc[0:0],
                            [column.metric.name for column in columns])
    reference_entries = [(line.label, [
        Entry(cell, format_number(cell.mean, column.decimals),
              interval=_interval(cell.intervals[0] if cell.intervals else None,
                                 column.decimals))
        for cell, column in zip(line.cells, columns, strict=True)]) for line in lines]
    beaten = _beats_real_data(entries, columns, lines, row_keys)
    notes: dict[str, str] = {}  # text -> marker, in reading order
    for line in entries:
        for index, entry in enumerate(line):
            text = _note_text(entry)
            if text:
                line[index] = replace(entry, note=notes.setdefault(text, _marker(len(notes))))
    return Table(row_axes, column_axes, short_names(list(row_axes + column_axes)), row_keys,
                 group_keys, columns, entries, [(m, t) for t, m in notes.items()], seeds,
                 reference_entries, beaten)


def _beats_real_data(entries: list[list[Entry]], columns: list[Column],
                     lines: list[ReferenceLine], row_keys: list[Key]) -> list[str]:
    """`row: metric` of every arm better than the real-data row beyond both uncertainties;
    each such entry gets the footnote that says so."""
    real = next((line for line in lines if line.key == "real_data"), None)
    if real is None:
        return []
    found = []
    for key, line in zip(row_keys, entries, strict=True):
        for index, (entry, column, reference) in enumerate(zip(line, columns, real.cells,
                                                                strict=True)):
            if entry.kind in RANKED and beats_real_data(entry.cell, reference,
                                                        column.metric.better):
                found.append(f"{', '.join(format_value(v) for v in key) or 'all runs'}: "
                             f"{column.metric.label}")
                line[index] = replace(entry, problem=True)
    return found


@dataclass(frozen=True)
class CellFormat:
    """How one table format writes an entry; the templates take the text through `{}`."""

    symbols: dict[str, str]  # failed, unavailable, missing
    spread: str  # before the std
    best: str
    second: str
    count: str
    note: str
    tie: str  # the mark of an arm the seeds cannot tell from the best

    def cell(self, entry: Entry) -> str:
        if entry.kind in self.symbols:
            text = self.symbols[entry.kind]
        else:
            text = entry.mean + (self.spread + entry.std if entry.std else "")
            text = {1: self.best, 2: self.second}.get(entry.rank, "{}").format(text)
            text += (" " + entry.interval if entry.interval else "") + (
                self.tie if entry.tie else "")
            if entry.n is not None:
                text += self.count.format(entry.n)
        return text + (self.note.format(entry.note) if entry.note else "")

    def reference(self, entry: Entry) -> str:
        """A reference row's value and interval; blank where the row has no such metric."""
        if not entry.cell.values:
            return ""
        return entry.mean + (" " + entry.interval if entry.interval else "")


MARKDOWN = CellFormat({"failed": "✗", "unavailable": "n/a", "missing": "–"}, " ± ",
                      "**{}**", "<ins>{}</ins>", " (n={})", "<sup>{}</sup>", " †")
LATEX = CellFormat({"failed": r"$\times$", "unavailable": "n/a", "missing": "--"}, r" $\pm$ ",
                   r"\textbf{{{}}}", r"\underline{{{}}}", r" ($n{{=}}{}$)",
                   r"\textsuperscript{{{}}}", r"$^\dagger$")


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


def markdown_grid(lines: list[list[str]]) -> tuple[list[list[str]], list[int]]:
    """The lines (header first) escaped for Markdown, and each column's width (at least 3)."""
    escaped = [[markdown_escape(text) for text in line] for line in lines]
    return escaped, [max(3, *(len(line[i]) for line in escaped)) for i in range(len(lines[0]))]


def markdown_row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def _markdown_caption(table: Table, name: str) -> str:
    spread = f"mean ± std over {table.seeds} seeds" if table.seeds > 1 else "one seed per cell"
    symbols = {entry.kind for line in table.entries for entry in line}
    parts = [f"**{name}**: {spread}", "best in **bold**, second <ins>underlined</ins>"]
    if "failed" in symbols:
        parts.append(f"{MARKDOWN.symbols['failed']} all runs failed")
    if "missing" in symbols:
        parts.append(f"{MARKDOWN.symbols['missing']} not run or not recorded")
    return "; ".join(parts + _context_notes(table)) + "."


def _context_notes(table: Table) -> list[str]:
    """What the intervals, the † marks and the reference rows mean, where the table has them."""
    entries = [entry for line in table.entries for entry in line]
    notes = [INTERVAL_NOTE] if any(entry.interval for entry in entries) else []
    if any(entry.tie for entry in entries):
        notes.append(SIGNIFICANCE_NOTE)
    if table.references:
        notes.append("*italic rows*: the reference rows, measured like the arms: real data "
                     "is what a perfect generator gets at this N, the untrained denoiser what "
                     "one that learned nothing gets")
    return notes


def protocol_warning(table: Table) -> str:
    """A sentence for the report when an arm beats real data, else ""."""
    if not table.beats_real_data:
        return ""
    return ("PROTOCOL PROBLEM: better than real data by more than the uncertainty of both ("
            + "; ".join(table.beats_real_data) + "). A generator cannot beat the data it "
            "imitates: check the reference set (eval.reference, the manifest's splits), N "
            "and the features before reading these numbers as results.")


def markdown_table(table: Table, name: str) -> str:
    """Caption, table and footnotes, ready to paste into index.md or a README."""
    if not table.rows:
        return f"**{name}**: no trial runs recorded in this sweep.\n"
    prefix = [table.labels[axis] for axis in table.row_axes] or [""]
    header = prefix + [(f"{table.group_label(column.group)} " if column.group else "")
                       + metric_header(column.metric) for column in table.columns]
    body = [labels + [MARKDOWN.cell(entry) for entry in line]
            for labels, line in zip(row_labels(table), table.entries, strict=True)]
    body += [[f"*{label}*", *[""] * (len(prefix) - 1), *map(MARKDOWN.reference, line)]
             for label, line in table.references]
    lines, widths = markdown_grid([header, *body])
    rule = [":" + "-" * (w - 1) if i < len(prefix) else ":" + "-" * (w - 2) + ":"
            for i, w in enumerate(widths)]
    rendered = [markdown_row(lines[0], widths), markdown_row(rule, widths)]
    rendered += [markdown_row(line, widths) for line in lines[1:]]
    notes = [f"- <sup>{marker}</sup> {markdown_escape(text)}" for marker, text in table.notes]
    warning = protocol_warning(table)
    notes += [f"- **{markdown_escape(warning)}**"] if warning else []
    footer = ["", *notes] if notes else []
    return "\n".join([_markdown_caption(table, name), "", *rendered, *footer]) + "\n"


def _latex_caption(table: Table) -> str:
    parts = [rf"mean $\pm$ std over {table.seeds} seeds" if table.seeds > 1
             else "one seed per cell", "best in bold, second underlined"]
    if any(entry.kind == "failed" for line in table.entries for entry in line):
        parts.append(rf"{LATEX.symbols['failed']}: all runs failed")
    notes = [latex_escape(note.replace("†", "DAGGER").replace("*italic rows*", "italic rows"))
             .replace("DAGGER", LATEX.tie.strip()).replace("α", r"$\alpha$")
             for note in _context_notes(table)]
    return "; ".join(parts + notes)


def latex_table(table: Table, name: str, sweep_id: str) -> str:
    """A complete `table` float; needs \\usepackage{booktabs} in the preamble."""
    prefix = [latex_escape(table.labels[axis]) for axis in table.row_axes] or [""]
    width = len(table.columns) // max(1, len(table.groups))
    lines = [f"% harness report {name}, sweep {sweep_id}; needs \\usepackage{{booktabs}}",
             r"\begin{table}[t]", r"  \centering",
             rf"  \caption{{{latex_escape(name)}: {_latex_caption(table)}.}}",
             rf"  \label{{tab:{slug(name)}}}",
             rf"  \begin{{tabular}}{{{'l' * len(prefix)}{'c' * len(table.columns)}}}",
             r"    \toprule"]
    if table.column_axes:
        spans = [rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(table.group_label(group))}}}"
                 for group in table.groups]
        lines.append("    " + " & ".join([""] * len(prefix) + spans) + r" \\")
        start = len(prefix) + 1
        rules = [rf"\cmidrule(lr){{{start + i * width}-{start + (i + 1) * width - 1}}}"
                 for i in range(len(table.groups))]
        lines.append("    " + " ".join(rules))
    header = prefix + [metric_header(column.metric, latex=True) for column in table.columns]
    lines += ["    " + " & ".join(header) + r" \\", r"    \midrule"]
    for labels, line in zip(row_labels(table), table.entries, strict=True):
        cells = [latex_escape(text) for text in labels] + [LATEX.cell(e) for e in line]
        lines.append("    " + " & ".join(cells) + r" \\")
    if table.references:
        lines.append(r"    \midrule")
    for label, line in table.references:
        cells = [rf"\textit{{{latex_escape(label)}}}", *[""] * (len(prefix) - 1),
                 *(latex_escape(LATEX.reference(entry)) for entry in line)]
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}"]
    warning = protocol_warning(table)
    if table.notes or warning:
        lines.append(r"  \par\smallskip\footnotesize")
        lines += [rf"  \textsuperscript{{{marker}}} {latex_escape(text)}\par"
                  for marker, text in table.notes]
        lines += [rf"  \textbf{{{latex_escape(warning)}}}\par"] if warning else []
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _csv_value(value: Any) -> str:
    """Full precision (repr) for floats, empty for NaN and None."""
    value = plain(value)
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_value(value) for value in row] for row in rows])
    return buffer.getvalue()


def table_csv(table: Table) -> str:
    """One line per row x column group: axis values, run counts, then mean, std, n and the 95%
    interval per metric; then one line per reference row, named in the last column."""
    metrics = list(dict.fromkeys(column.metric.name for column in table.columns))
    header = [*table.row_axes, *table.column_axes, "runs", "finished"]
    header += [f"{name} {stat}" for name in metrics
               for stat in ("mean", "std", "n", "ci_low", "ci_high")]
    rows = []
    width = len(metrics)

    def stats(cells: list[Cell], interval: Callable[[Cell], tuple[float, float] | None]
              ) -> list[Any]:
        return [value for cell in cells
                for value in (cell.mean, cell.std, cell.n, *(interval(cell) or (None, None)))]

    for key, line in zip(table.rows, table.entries, strict=True):
        for number, group in enumerate(table.groups):
            cells = [entry.cell for entry in line[number * width:(number + 1) * width]]
            rows.append([*key, *group, cells[0].runs if cells else 0,
                         cells[0].finished if cells else 0, *stats(cells, arm_interval), ""])
    for label, line in table.references:
        cells = [entry.cell for entry in line[:width]]
        rows.append([*[""] * len(table.row_axes + table.column_axes), 1, 1,
                     *stats(cells, lambda c: c.intervals[0] if c.intervals else None), label])
    return _csv([*header, "reference_row"], rows)


def runs_csv(runs: pd.DataFrame, settings: ReportSettings) -> str:
    """Every trial run of the sweep: ids, status, seed, the table's axes, all metrics, error."""
    metrics = sorted(c for c in runs.columns if c.startswith("metrics."))
    axes = [f"params.{axis}" for axis in settings.axes if f"params.{axis}" in runs]
    columns = ["trial_id", "run_id", "status", "seed", *axes, *metrics, "error"]
    header = [column.removeprefix("params.").removeprefix("metrics.") for column in columns]
    rows = [[run.get(column) for column in columns] for _, run in runs.iterrows()]
    return _csv(header, rows)
