"""Least-squares power law on log-log axes: log10 y = slope * log10 x + intercept."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) over the points with x > 0 and y > 0; needs two distinct x."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (xs > 0) & (ys > 0) & np.isfinite(xs) & np.isfinite(ys)
    if len(np.unique(xs[keep])) < 2:
        raise ValueError("a power-law fit needs two distinct positive x values")
    slope, intercept = np.polyfit(np.log10(xs[keep]), np.log10(ys[keep]), 1)
    return float(slope), float(intercept)
