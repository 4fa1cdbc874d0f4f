"""Deterministic figures: seaborn look, bundled font, fixed DPI, no timestamps in the files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import seaborn as sns
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGURE_SIZE = (4.8, 3.4)  # inches
# Writers stamp the matplotlib version and the time; None drops the entry.
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


def style() -> dict[str, Any]:
    params: dict[str, Any] = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper")}
    params |= {
        # DejaVu ships with matplotlib: the same glyphs on every machine.
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
        "mathtext.fontset": "dejavusans", "svg.hashsalt": "harness-report",
        "figure.dpi": 100, "savefig.dpi": 200, "pdf.fonttype": 42,
        "axes.prop_cycle": cycler(color=sns.color_palette("colorblind")),
    }
    return params


@contextmanager
def figure() -> Iterator[Figure]:
    """A figure on the Agg canvas (no pyplot, no global backend) inside the report style."""
    with matplotlib.rc_context(style()):
        fig = Figure(figsize=FIGURE_SIZE, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write stem.png and stem.pdf; call inside `figure()` so that the style applies."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"
    fig.savefig(png, format="png", metadata=PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    return [png, pdf]


def colors(count: int) -> list[tuple[float, float, float]]:
    palette = sns.color_palette("colorblind")
    return [palette[index % len(palette)] for index in range(count)]
