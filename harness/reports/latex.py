"""The report table as LaTeX (booktabs): \\textbf best, \\underline second, $\\times$ failed."""

from __future__ import annotations

from harness.reports.headers import latex_escape, metric_header
from harness.reports.labels import slug
from harness.reports.layout import Entry, Table
from harness.reports.markdown import row_labels

SYMBOLS = {"failed": r"$\times$", "unavailable": "n/a", "missing": "--"}


def latex_cell(entry: Entry) -> str:
    if entry.kind in SYMBOLS:
        text = SYMBOLS[entry.kind]
    else:
        text = entry.mean + (rf" $\pm$ {entry.std}" if entry.std else "")
        text = {1: rf"\textbf{{{text}}}", 2: rf"\underline{{{text}}}"}.get(entry.rank, text)
        if entry.n is not None:
            text += rf" ($n{{=}}{entry.n}$)"
    return text + (rf"\textsuperscript{{{entry.note}}}" if entry.note else "")


def latex_table(table: Table, name: str, sweep_id: str) -> str:
    """A complete `table` float; needs \\usepackage{booktabs} in the preamble."""
    prefix = [latex_escape(table.labels[axis]) for axis in table.row_axes] or [""]
    width = len(table.columns) // max(1, len(table.groups))
    lines = [f"% harness report {name}, sweep {sweep_id}; needs \\usepackage{{booktabs}}",
             r"\begin{table}[t]", r"  \centering",
             rf"  \caption{{{latex_escape(name)}: {_caption(table)}.}}",
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
        cells = [latex_escape(text) for text in labels] + [latex_cell(e) for e in line]
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}"]
    if table.notes:
        lines.append(r"  \par\smallskip\footnotesize")
        lines += [rf"  \textsuperscript{{{marker}}} {latex_escape(text)}\par"
                  for marker, text in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _caption(table: Table) -> str:
    parts = [rf"mean $\pm$ std over {table.seeds} seeds" if table.seeds > 1
             else "one seed per cell", "best in bold, second underlined"]
    if any(entry.kind == "failed" for line in table.entries for entry in line):
        parts.append(rf"{SYMBOLS['failed']}: all runs failed")
    return "; ".join(parts)

