"""Metric registry: metrics are looked up by name, each with its direction of better."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PairwiseFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class PairwiseMetric:
    """A metric over paired uint8 NHWC image sets (reconstruction vs original)."""

    name: str
    fn: PairwiseFn
    higher_is_better: bool
    description: str


PAIRWISE: dict[str, PairwiseMetric] = {}


def register_pairwise(name: str, higher_is_better: bool, description: str
                      ) -> Callable[[PairwiseFn], PairwiseFn]:
    def add(fn: PairwiseFn) -> PairwiseFn:
        PAIRWISE[name] = PairwiseMetric(name, fn, higher_is_better, description)
        return fn
    return add


def get_pairwise(name: str) -> PairwiseMetric:
    if name not in PAIRWISE:
        raise KeyError(f"unknown metric {name!r}; registered: {', '.join(sorted(PAIRWISE))}")
    return PAIRWISE[name]


from harness.metrics import pairwise  # noqa: E402,F401  (registers psnr, ssim, l1)
