"""index.md of a report: sweep facts, the table inline, every plot embedded, failed runs."""

from __future__ import annotations

from pathlib import Path

from harness.reports.aggregate import first_line
from harness.reports.headers import markdown_escape
from harness.reports.loading import FINISHED, Sweep
from harness.reports.plots import Plot


def _facts(sweep: Sweep, command: str) -> list[str]:
    statuses = sweep.runs["status"].value_counts().sort_index()
    counts = ", ".join(f"{count} {status.lower()}" for status, count in statuses.items())
    rows = [("sweep", f"`{sweep.sweep_id}` ({sweep.status.lower()})"),
            ("date", f"{sweep.date} (start of the sweep)"),
            ("git commit", ", ".join(f"`{commit}`" for commit in sweep.commits)),
            ("trial runs", f"{len(sweep.runs)}: {counts}" if len(sweep.runs) else "none")]
    if sweep.tags.get("profiles"):
        rows.append(("profiles", sweep.tags["profiles"]))
    if sweep.tags.get("overrides"):
        rows.append(("overrides", f"`{sweep.tags['overrides']}`"))
    rows.append(("regenerate", f"`{command}`"))
    return ["| | |", "|:--|:--|", *(f"| {key} | {markdown_escape(value)} |" for key, value in rows)]


def _plot_section(plot: Plot, out: Path) -> list[str]:
    png, pdf = (path.relative_to(out).as_posix() for path in plot.files)
    lines = [f"### {plot.title}", "", f"![{plot.title}]({png})", ""]
    if plot.fits:
        fits = ", ".join(f"{fit.slope:.4f}" + (f" ({fit.line})" if fit.line else "")
                         for fit in plot.fits)
        lines += [f"Fitted slope (least squares on log-log axes): {fits}.", ""]
    return [*lines, f"[PDF]({pdf})", ""]


def _failures(sweep: Sweep) -> list[str]:
    failed = sweep.runs[sweep.runs["status"] != FINISHED]
    if failed.empty:
        return []
    lines = ["## Runs that did not finish", "", "| trial | seed | status | error |",
             "|:--|:--|:--|:--|"]
    lines += [f"| {run['trial_id']} | {run['seed']} | {run['status']} | "
              f"{markdown_escape(first_line(str(run['error'] or ''), 300))} |"
              for _, run in failed.iterrows()]
    return [*lines, "", "The traceback is in each run's `traceback.txt` artifact in MLflow.", ""]


def index_markdown(sweep: Sweep, out: Path, table_markdown: str, plots: list[Plot],
                   curves: list[Plot], description: str, command: str) -> str:
    lines = [f"# {sweep.experiment}", ""]
    lines += [description.strip(), ""] if description.strip() else []
    lines += [*_facts(sweep, command), "", "## Results", "", table_markdown.rstrip(), "",
              "Also as [LaTeX](table.tex) (booktabs) and [CSV](table.csv) (raw mean, std, n); "
              "every trial run in [runs.csv](runs.csv).", ""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            lines += _plot_section(plot, out)
    if curves:
        lines += ["## Training curves", ""]
        for plot in curves:
            lines += _plot_section(plot, out)
    lines += _failures(sweep)
    return "\n".join(lines).rstrip() + "\n"
