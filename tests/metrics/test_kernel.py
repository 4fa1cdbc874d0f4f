"""Tests of harness.metrics.kernel: KID's subsets and spread, and the MMD^2 of weighted
resamples against torch-fidelity's and against the definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.metrics.bootstrap import draw_counts
from harness.metrics.kernel import (
    cubic_kernel,
    kid_over_subsets,
    kid_subset_size,
    mmd2_replicates,
)


def features(count: int, dim: int, scale: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(count, dim)) * scale).astype(np.float32)


def unbiased_mmd2(real: np.ndarray, fake: np.ndarray) -> float:
    """Gretton et al. 2012, eq. 3, written out: within-set means over i != j, cross over all."""
    x, y = real.astype(np.float64), fake.astype(np.float64)
    kxx, kyy, kxy = cubic_kernel(x, x), cubic_kernel(y, y), cubic_kernel(x, y)
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def test_subset_size_is_half_the_smaller_set_up_to_1000() -> None:
    assert kid_subset_size(64, 64) == 32
    assert kid_subset_size(256, 100) == 50
    assert kid_subset_size(5000, 3000) == 1000


def test_kid_has_a_spread_at_64_images() -> None:
    real, fake = features(64, 128, 1.0, 0), features(64, 128, 1.1, 1)
    out = kid_over_subsets(real, fake)
    assert out["kid_std"] > 0
    assert out == kid_over_subsets(real, fake)  # seeded


def test_mmd2_of_the_whole_set_equals_torch_fidelitys_kid_on_one_full_subset() -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = features(50, 128, 1.0, 2), features(50, 128, 1.1, 3)
    [whole] = mmd2_replicates(real, fake, np.ones((1, 50), dtype=int))
    expected = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real),
                                      kid_subset_size=50, kid_subsets=1, verbose=False)
    assert whole == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-4)
    assert whole == pytest.approx(unbiased_mmd2(real, fake), rel=1e-10)


def test_mmd2_of_a_resample_leaves_out_pairs_of_copies_of_one_feature() -> None:
    real, fake = features(40, 64, 1.0, 4), features(30, 64, 1.2, 5)
    subset = np.zeros(30, dtype=int)
    subset[[1, 4, 9, 16, 25]] = 1  # no copies: the U-statistic of those five features
    counts = np.array([[3, 0, 1, *[0] * 26, 1]], dtype=int)  # feature 0 three times
    [of_subset, of_copies] = mmd2_replicates(real, fake, np.stack([subset, counts[0]]))
    assert of_subset == pytest.approx(unbiased_mmd2(real, fake[subset == 1]), rel=1e-10)
    # Written out: positions 0, 1, 2 hold feature 0; 3 holds feature 2; 4 holds feature 29.
    rows = fake[[0, 0, 0, 2, 29]].astype(np.float64)
    kernel = cubic_kernel(rows, rows)
    pairs = [(i, j) for i in range(5) for j in range(5) if i != j and not (i < 3 and j < 3)]
    within = np.mean([kernel[i, j] for i, j in pairs])
    x = real.astype(np.float64)
    kxx = cubic_kernel(x, x)
    expected = ((kxx.sum() - np.trace(kxx)) / (40 * 39) + within
                - 2 * cubic_kernel(rows, x).mean())
    assert of_copies == pytest.approx(expected, rel=1e-10)


def test_resampled_mmd2_is_centred_on_the_sets_own_value() -> None:
    """Counting copy pairs would shift every round by about (k(x, x) - k(x, y)) / N (0.06
    here, ten times the spread); without them the rounds average to the set's own MMD^2."""
    real, fake = features(128, 256, 1.0, 6), features(128, 256, 1.05, 7)
    [whole] = mmd2_replicates(real, fake, np.ones((1, 128), dtype=int))
    rounds = mmd2_replicates(real, fake, draw_counts(128, 400, seed=8))
    assert abs(rounds.mean() - whole) < 4 * rounds.std() / np.sqrt(len(rounds))
