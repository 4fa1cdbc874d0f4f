"""Tests of harness.metrics.frechet: FID at any N against torch-fidelity's, on weighted
resamples, and FID-infinity on one and on two distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.metrics.bootstrap import draw_counts, resample_indices
from harness.metrics.frechet import (
    FrechetReference,
    SubsetGrams,
    covariance_factor,
    fid_inf_sizes,
    fid_infinity,
    frechet_distance,
)


def torch_fidelity_fid(real: np.ndarray, fake: np.ndarray) -> float:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (real, fake)]
    return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]


def gamma_features(count: int, dim: int, scale: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).gamma(2.0, 0.3, (count, dim)) * scale).astype(np.float32)


def gaussian_features(count: int, spectrum: np.ndarray, shift: np.ndarray | None = None,
                      seed: int = 0) -> np.ndarray:
    """Gaussian features with covariance diag(spectrum) (and mean `shift`)."""
    draws = np.random.default_rng(seed).normal(size=(count, len(spectrum))) * np.sqrt(spectrum)
    return (draws + (0 if shift is None else shift)).astype(np.float32)


@pytest.mark.parametrize(("num_real", "num_fake", "dim"), [
    (40, 30, 256),  # both sets below the dimension: the reference's centred rows as factor
    (300, 200, 64),  # both above: S_r^1/2 (Cholesky) once, the large-N path
    (50, 300, 64),  # reference below, generated set above
    (300, 50, 64),  # reference above, generated set below
    (65, 65, 64),  # n - 1 = d, the boundary between the two factors
])
def test_fid_equals_torch_fidelitys_below_and_above_the_dimension(num_real: int, num_fake: int,
                                                                   dim: int) -> None:
    real = gamma_features(num_real, dim, 1.0, 1)
    fake = gamma_features(num_fake, dim, 1.2, 2)
    assert frechet_distance(real, fake) == pytest.approx(torch_fidelity_fid(real, fake),
                                                         rel=1e-6)


def test_fid_with_a_singular_reference_covariance_equals_torch_fidelitys() -> None:
    """A feature constant over the reference set (a dead channel) makes S_r singular above the
    dimension: Cholesky fails and the factor comes from eigh."""
    real, fake = gamma_features(200, 48, 1.0, 3), gamma_features(150, 48, 1.1, 4)
    real[:, 5] = 0.25
    centred = real.astype(np.float64) - real.astype(np.float64).mean(0)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(centred.T @ centred / 199)
    factor = covariance_factor(centred)
    np.testing.assert_allclose(factor @ factor.T, centred.T @ centred / 199, atol=1e-12)
    assert frechet_distance(real, fake) == pytest.approx(torch_fidelity_fid(real, fake),
                                                         rel=1e-6)


def test_fid_of_a_set_against_itself_is_zero_at_large_n() -> None:
    features = gamma_features(200, 32, 1.0, 5)
    assert abs(frechet_distance(features, features)) < 1e-9


@pytest.mark.parametrize("num_fake", [40, 300])
def test_weighted_fid_is_the_fid_of_the_resample_with_its_duplicate_rows(num_fake: int) -> None:
    real, fake = gamma_features(120, 64, 1.0, 6), gamma_features(num_fake, 64, 1.3, 7)
    pair = FrechetReference.of(real).against(fake)
    for counts in draw_counts(num_fake, 3, seed=8):
        expected = torch_fidelity_fid(real, fake[resample_indices(counts)])
        assert pair.distance(counts) == pytest.approx(expected, rel=1e-6)
    assert pair.distance() == pytest.approx(frechet_distance(real, fake), rel=1e-12)


def test_subset_fid_from_gram_matrices_equals_the_fid_of_the_subsets() -> None:
    real, fake = gamma_features(90, 128, 1.0, 12), gamma_features(70, 128, 1.2, 13)
    grams = SubsetGrams.of(real, fake)
    rng = np.random.default_rng(14)
    for size_real, size_fake in ((20, 20), (60, 35), (90, 70)):
        rows_real = rng.choice(90, size_real, replace=False)
        rows_fake = rng.choice(70, size_fake, replace=False)
        expected = torch_fidelity_fid(real[rows_real], fake[rows_fake])
        assert grams.distance(rows_real, rows_fake) == pytest.approx(expected, rel=1e-6)


def test_fid_inf_sizes_span_a_quarter_to_all_of_the_smaller_set() -> None:
    sizes = fid_inf_sizes(256)
    assert sizes[0] == 64 and sizes[-1] == 256 and len(sizes) == 10
    assert np.all(np.diff(sizes) > 0)
    assert fid_inf_sizes(16)[0] == 4


# An Inception-like spectrum in 2048-d: fast decay, effective dimension
# (sum l)^2 / sum l^2 = 40 (measured on pool3 features of the skimage patches: about 17).
SPECTRUM = np.exp(-np.arange(2048) / 20)


def test_fid_inf_of_one_distribution_is_near_zero_and_below_fid() -> None:
    """Two disjoint halves of one Gaussian sample: FID at N = 512 is all bias; FID-infinity
    removes most of it."""
    pool = gaussian_features(1024, SPECTRUM, seed=9)
    real, fake = pool[:512], pool[512:]
    fid, fid_inf = frechet_distance(real, fake), fid_infinity(real, fake)
    assert fid > 1.0  # the bias at N = 512 (the population FID is 0)
    assert abs(fid_inf) < 0.15 * fid, (fid, fid_inf)
    assert fid_inf < fid
    assert fid_infinity(real, fake) == fid_inf  # seeded


def test_fid_inf_of_two_distributions_is_clearly_positive_and_nearer_the_true_fid() -> None:
    """A mean shift of 0.3 in 10 coordinates: the population FID is 10 * 0.3^2 = 0.9."""
    shift = np.zeros(2048)
    shift[:10] = 0.3
    real = gaussian_features(512, SPECTRUM, seed=10)
    fake = gaussian_features(512, SPECTRUM, shift, seed=11)
    fid, fid_inf = frechet_distance(real, fake), fid_infinity(real, fake)
    assert fid_inf > 0.5, (fid, fid_inf)
    assert abs(fid_inf - 0.9) < 0.25 * abs(fid - 0.9), (fid, fid_inf)
