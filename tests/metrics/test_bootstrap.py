"""Tests of harness.metrics.bootstrap: the resamples, and the intervals of FID and KID they give
on synthetic features (location, shrinking with N, width against fresh generated sets)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.bootstrap import (
    bootstrap_interval,
    describe_interval,
    draw_counts,
    resample_indices,
)
from harness.metrics.frechet import frechet_distance
from harness.metrics.kernel import mmd2_replicates
from harness.metrics.sets import get_set_metric, score

SPECTRUM = np.exp(-np.arange(256) / 20)  # fast decay, as Inception features' spectrum


def features(count: int, seed: int, shift: float = 0.0) -> np.ndarray:
    draws = np.random.default_rng(seed).normal(size=(count, len(SPECTRUM)))
    return (draws * np.sqrt(SPECTRUM) + shift).astype(np.float32)


def width(interval: tuple[float, float] | None) -> float:
    assert interval is not None
    return interval[1] - interval[0]


def test_counts_are_seeded_resamples_with_replacement() -> None:
    counts = draw_counts(50, 20)
    assert counts.shape == (20, 50) and np.all(counts.sum(1) == 50)
    assert np.array_equal(counts, draw_counts(50, 20))
    assert (counts == 0).any() and (counts > 1).any()  # some rows left out, some repeated
    assert np.array_equal(np.bincount(resample_indices(counts[0]), minlength=50), counts[0])
    assert describe_interval(100) == "bootstrap 95%, 100 rounds over the generated set"


@pytest.mark.parametrize("name", ["fid", "kid"])
def test_interval_contains_the_estimate_and_shrinks_as_n_grows(name: str) -> None:
    widths = []
    for count in (128, 512):
        real, fake = features(count, 0), features(count, 1, shift=0.05)
        values, interval = score(get_set_metric(name), real, fake, draw_counts(count, 100))
        assert interval is not None and interval[0] < values[name] < interval[1]
        widths.append(width(interval))
    assert widths[1] < 0.6 * widths[0], widths


def test_fid_interval_is_not_the_percentile_interval_of_the_biased_resamples() -> None:
    """A resample holds about 63% distinct features, so FID on it is biased further: the
    percentile interval of the rounds lies wholly above FID; the reflected interval does not."""
    real, fake = features(128, 2), features(128, 3, shift=0.05)
    counts = draw_counts(128, 100)
    rounds = get_set_metric("fid").bootstrap(real, fake, counts)
    point = frechet_distance(real, fake)
    assert np.percentile(rounds, 2.5) > point
    interval = bootstrap_interval(point, rounds, counts)
    assert interval is not None and interval[0] < point < interval[1]


@pytest.mark.parametrize("name", ["fid", "kid"])
def test_interval_width_matches_the_spread_over_fresh_generated_sets(name: str) -> None:
    """Against one fixed reference set, the 95% interval from one generated set of 256 is about
    as wide as +-1.96 sd of the metric over 40 fresh generated sets of 256."""
    real, fake = features(256, 4), features(256, 5, shift=0.05)
    _, interval = score(get_set_metric(name), real, fake, draw_counts(256, 100))
    whole = np.ones((1, 256), dtype=int)
    fresh = [frechet_distance(real, other) if name == "fid"
             else mmd2_replicates(real, other, whole)[0]
             for other in (features(256, 100 + seed, shift=0.05) for seed in range(40))]
    ratio = width(interval) / (2 * 1.96 * np.std(fresh))
    assert 0.5 < ratio < 2.0, ratio


def test_no_interval_from_non_finite_rounds() -> None:
    counts = draw_counts(10, 5)
    assert bootstrap_interval(1.0, np.array([1.0, np.nan, 1.2, 0.9, 1.1]), counts) is None
    assert bootstrap_interval(float("inf"), np.ones(5), counts) is None
    assert bootstrap_interval(1.0, np.full(5, 2.0), counts) == (1.0, 1.0)
