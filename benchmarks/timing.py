"""Timing shared by the benchmark scripts: medians of repeated calls after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls pay for allocation and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_medians(reference: Callable[[], object], fn: Callable[[], object], repeats: int
                   ) -> tuple[float, float, float]:
    """Medians of `reference`'s and `fn`'s seconds and of their per-repeat ratio fn/reference.

    The two are timed back to back in each repeat, so a machine whose speed drifts (a shared
    VM) moves both alike and the ratio stays steady where separate medians would not.
    """
    reference(), fn()  # warm-up
    pairs = []
    for _ in range(repeats):
        start = time.perf_counter()
        reference()
        middle = time.perf_counter()
        fn()
        pairs.append((middle - start, time.perf_counter() - middle))
    ratios = [b / a for a, b in pairs]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(ratios))
