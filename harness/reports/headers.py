"""Header text of metrics (label, unit, arrow) and axes, shared by the table formats."""

from __future__ import annotations

from harness.reports.labels import ARROWS, LATEX_ARROWS
from harness.reports.settings import MetricSpec


def metric_header(metric: MetricSpec, latex: bool = False) -> str:
    """'PSNR (dB) ↑' or, for LaTeX, 'PSNR (dB) $\\uparrow$'."""
    label = latex_escape(metric.label) if latex else metric.label
    unit = latex_escape(metric.unit) if latex else metric.unit
    text = f"{label} ({unit})" if unit else label
    arrows = LATEX_ARROWS if latex else ARROWS
    return f"{text} {arrows[metric.better]}" if metric.better in arrows else text


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "…": r"\ldots{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")
