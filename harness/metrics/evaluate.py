"""What trials call: pairwise and set metrics by name, each result with its provenance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.cache import ArtifactCache
from harness.errors import ConfigError
from harness.metrics.bootstrap import DEFAULT_ROUNDS
from harness.metrics.registry import PAIRWISE, MetricUnavailable, get_pairwise
from harness.metrics.result import MetricResult, unavailable
from harness.metrics.sets import SET_METRICS, ReferenceKey, SetLabels, evaluate_sets
from harness.weights import WeightsStore, using

if TYPE_CHECKING:
    import torch


def check_metric_names(names: Sequence[str], key: str, file: str | Path | None = None,
                       sets_only: bool = False) -> None:
    """ConfigError naming the file and key when a name is not a registered metric."""
    known = sorted(SET_METRICS) if sets_only else sorted({*PAIRWISE, *SET_METRICS})
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(file, key, f"unknown {'set ' if sets_only else ''}metric(s) "
                          f"{', '.join(unknown)}; known: {', '.join(known)}")


def evaluate_pairs(real: np.ndarray, fake: np.ndarray, metrics: Sequence[str],
                   device: torch.device | str = "cpu") -> list[MetricResult]:
    """Pairwise metrics (fake[i] against real[i]), networks (LPIPS) on `device`; one that
    cannot run says why."""
    results = []
    for name in metrics:
        metric = get_pairwise(name)
        provenance = metric.provenance()
        if provenance.unavailable_reason is not None:
            results.append(unavailable(name, provenance.unavailable_reason, len(fake)))
            continue
        try:
            value = metric.compute(real, fake, device)
        except MetricUnavailable as error:
            results.append(unavailable(name, str(error), len(fake)))
            continue
        results.append(MetricResult(name, value, None, len(fake), provenance.extractor,
                                    provenance.weights_sha256))
    return results


def evaluate(real: np.ndarray | None, fake: np.ndarray, metrics: Sequence[str],
             cache: ArtifactCache | None = None, real_key: ReferenceKey | None = None,
             weights: WeightsStore | None = None, progress: bool = False,
             bootstrap: int = DEFAULT_ROUNDS, device: torch.device | str = "cpu",
             labels: SetLabels | None = None) -> list[MetricResult]:
    """Any registered metrics by name: pairwise ones on (real, fake) pairs, set ones on sets.

    Results come back in the order asked for (a set metric may give several, e.g. kid, kid_std).
    Set metrics' scores carry bootstrap intervals from `bootstrap` rounds over the generated
    set's features, the reference set held fixed (0: none; see evaluate_sets). The metric
    networks (Inception, LPIPS) run on `device` in float32; images and results stay numpy.
    The metrics computed by class (kid_per_class) need both sets' `labels`.
    """
    unknown = [n for n in metrics if n not in PAIRWISE and n not in SET_METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {', '.join(unknown)}; registered: "
                       f"{', '.join([*PAIRWISE, *SET_METRICS])}")
    set_names = [n for n in metrics if n in SET_METRICS]
    by_name: dict[str, list[MetricResult]] = {}
    if set_names:
        set_results = evaluate_sets(real, fake, set_names, cache, real_key, weights, progress,
                                    bootstrap, device, labels)
        for name in set_names:
            by_name[name] = [r for r in set_results if SET_METRICS[name].owns(r.name)]
    pair_names = [n for n in metrics if n in PAIRWISE]
    if pair_names:
        if real is None or real.shape != fake.shape:
            raise ValueError("pairwise metrics need real and fake sets of one shape")
        with using(weights):
            for result in evaluate_pairs(real, fake, pair_names, device):
                by_name[result.name] = [result]
    return [result for name in metrics for result in by_name[name]]
