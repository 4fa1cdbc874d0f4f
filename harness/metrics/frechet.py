"""FID from pool3 features at any N, for a generated set and its weighted bootstrap resamples,
and FID-infinity (Chong and Forsyth 2020).

FID (Heusel et al. 2017, eq. 6): ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr sqrt(S_r S_g).
For any factor L with L L' = S_r, the nonzero eigenvalues of S_r S_g are those of the PSD
matrix L' S_g L = (B L)'(B L) / (n - 1), B the centred generated features, so
tr sqrt(S_r S_g) = sum sqrt(eigvalsh(Gram of B L)) / sqrt(n - 1). L is A' / sqrt(n_r - 1)
(A the centred reference) below the feature dimension d, else the Cholesky factor of S_r
(eigh where S_r is singular), computed once per reference; the Gram is taken on the smaller
side of B L, so no d x d eigendecomposition runs when either set is smaller than d, and never
the eigvals of a non-symmetric d x d product (torch-fidelity's way: 12 to 20 s at d = 2048 on
2 CPU cores, against about 0.3 s for one symmetric eigvalsh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.metrics.blas import blas_threads_for

FID_INF_SIZES = 10  # subset sizes of the FID-infinity fit
FID_INF_DRAWS = 3  # random subset pairs per size (their FIDs are averaged)
FID_INF_SEED = 2020
GRAM_ROWS = 4096  # FID-infinity's Gram matrices: at most 3 x 128 MiB


def covariance_factor(centred: np.ndarray) -> np.ndarray:
    """L (d x r) with L L' = the sample covariance of the rows of `centred` (zero-mean)."""
    n, d = centred.shape
    if n - 1 <= d:
        return centred.T / np.sqrt(n - 1)
    covariance = centred.T @ centred / (n - 1)
    try:
        return np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:  # singular (e.g. a feature constant over the set)
        values, vectors = np.linalg.eigh(covariance)
        keep = values > 0
        return vectors[:, keep] * np.sqrt(values[keep])


@dataclass(frozen=True)
class FrechetReference:
    """What FID needs of the reference set, computed once: its mean, tr S_r and L L' = S_r."""

    mean: np.ndarray
    trace: float
    factor: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> FrechetReference:
        if len(features) < 2:
            raise ValueError(f"FID needs at least 2 reference features, got {len(features)}")
        real = features.astype(np.float64)
        mean = real.mean(0)
        centred = real - mean
        return cls(mean, float((centred * centred).sum() / (len(real) - 1)),
                   covariance_factor(centred))

    def against(self, fake: np.ndarray) -> FrechetPair:
        fake64 = fake.astype(np.float64)
        return FrechetPair(self, fake64, fake64 @ self.factor)


@dataclass(frozen=True)
class FrechetPair:
    """A reference and a generated set projected on its factor: FID of the set, or of any
    resample of it given as counts per row (a row drawn c times weighs c), at the cost of one
    Gram and eigvalsh of side min(distinct rows, rank of S_r)."""

    reference: FrechetReference
    fake: np.ndarray  # (n, d) float64
    projected: np.ndarray  # fake @ reference.factor

    def distance(self, counts: np.ndarray | None = None) -> float:
        """FID (Heusel et al. 2017, eq. 6) of the generated set, each row weighted by `counts`
        (the resample's mean and n - 1 sample covariance, exactly as its duplicated rows give)."""
        if counts is None:
            counts = np.ones(len(self.fake))
        rows = np.flatnonzero(counts)
        weights = counts[rows].astype(np.float64)
        n = weights.sum()
        if n < 2:
            raise ValueError("FID needs at least 2 generated features")
        fake, projected = self.fake[rows], self.projected[rows]
        mean = weights @ fake / n
        diff = self.reference.mean - mean
        centred = fake - mean
        trace = weights @ (centred * centred).sum(1) / (n - 1)
        scaled = (projected - weights @ projected / n) * np.sqrt(weights)[:, None]
        gram = scaled @ scaled.T if len(scaled) <= scaled.shape[1] else scaled.T @ scaled
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None)).sum() / np.sqrt(n - 1)
        return float(diff @ diff + self.reference.trace + trace - 2 * tr_covmean)

    def distances(self, counts: np.ndarray) -> np.ndarray:
        """FID of each resample, counts (rounds, n)."""
        with blas_threads_for(min(self.projected.shape)):
            return np.array([self.distance(row) for row in counts])


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature sets (torch-fidelity's value to float tolerance; tested)."""
    with blas_threads_for(min(len(real), len(fake))):
        return FrechetReference.of(real).against(fake).distance()


def fid_inf_sizes(smallest: int, count: int = FID_INF_SIZES) -> np.ndarray:
    """`count` subset sizes evenly spaced from about smallest / 4 (at least 2) to smallest."""
    low = max(2, smallest // 4)
    return np.unique(np.linspace(low, smallest, count).round().astype(int))


@dataclass(frozen=True)
class SubsetGrams:
    """FID of subsets of two feature sets from their Gram matrices, computed once: with A, B
    the centred subsets, A B' is the subsets' block of real @ fake' centred on both sides, and
    tr sqrt(S_r S_g) its nuclear norm / sqrt((m_r - 1)(m_g - 1)) (the eigenvalues of S_r S_g
    are the squared singular values of A B' / sqrt(...)); means and traces come from the
    blocks of real @ real' and fake @ fake'. A subset FID then costs one eigvalsh of its size,
    no pass over the d features (FID-infinity draws 28 subset pairs)."""

    real: np.ndarray  # real @ real', float64
    fake: np.ndarray  # fake @ fake'
    cross: np.ndarray  # real @ fake'

    @classmethod
    def of(cls, real: np.ndarray, fake: np.ndarray) -> SubsetGrams:
        real64, fake64 = real.astype(np.float64), fake.astype(np.float64)
        return cls(real64 @ real64.T, fake64 @ fake64.T, real64 @ fake64.T)

    def distance(self, rows_real: np.ndarray, rows_fake: np.ndarray) -> float:
        """FID (Heusel et al. 2017, eq. 6) of real[rows_real] against fake[rows_fake]."""
        m_r, m_g = len(rows_real), len(rows_fake)
        real = self.real[np.ix_(rows_real, rows_real)]
        fake = self.fake[np.ix_(rows_fake, rows_fake)]
        cross = self.cross[np.ix_(rows_real, rows_fake)]
        mean_rr, mean_gg, mean_rg = real.mean(), fake.mean(), cross.mean()
        trace_r = (np.trace(real) - m_r * mean_rr) / (m_r - 1)
        trace_g = (np.trace(fake) - m_g * mean_gg) / (m_g - 1)
        centred = cross - cross.mean(1, keepdims=True) - cross.mean(0, keepdims=True) + mean_rg
        gram = centred @ centred.T if m_r <= m_g else centred.T @ centred
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None)).sum() / np.sqrt(
            (m_r - 1) * (m_g - 1))
        return float(mean_rr + mean_gg - 2 * mean_rg + trace_r + trace_g - 2 * tr_covmean)


def fid_infinity(real: np.ndarray, fake: np.ndarray, seed: int = FID_INF_SEED,
                 sizes: int = FID_INF_SIZES, draws: int = FID_INF_DRAWS) -> float:
    """FID-infinity, Chong and Forsyth 2020 ("Effectively Unbiased FID and Inception Score and
    where to find them", CVPR 2020, sec. 3): the bias of FID at N images is, to first order,
    linear in 1 / N, FID_N = FID_inf + k / N + O(1 / N^2) (from FID's Taylor expansion about
    the population statistics), so a least-squares line of FID_N against 1 / N, fitted at
    several N, meets the axis 1 / N = 0 at FID_inf. Their code fits 15 N evenly spaced from
    5k to 50k generated images against fixed 50k-image reference statistics.

    The paper fixes the reference statistics (50k training images) and subsamples the generated
    set; here the reference set is as small as the generated one, so each size N draws random
    subsets of N features from BOTH sets (`draws` pairs per size where N is below the feature
    dimension, else one; seeded; FIDs averaged), with N from about min(n_r, n) / 4 to
    min(n_r, n). The expansion is asymptotic: far below the
    features' effective dimension the 1 / N line removes only part of the bias.
    """
    rng = np.random.default_rng(seed)
    smallest = min(len(real), len(fake))
    points = fid_inf_sizes(smallest, sizes)
    if len(points) < 2:
        raise ValueError(f"FID-infinity needs at least 2 subset sizes, got {len(points)}")
    subset_fid = _subset_fid_function(real, fake)
    # Above the dimension a subset FID costs seconds and varies little from draw to draw next
    # to its 1 / N trend: one draw per size there, as in the paper. Subsets as large as both
    # sets are permutations of them, all with one FID: one draw too.
    per_size = draws if smallest <= real.shape[1] else 1
    with blas_threads_for(smallest):
        values = [np.mean([subset_fid(rng.choice(len(real), size, replace=False),
                                      rng.choice(len(fake), size, replace=False))
                           for _ in range(1 if size == len(real) == len(fake) else per_size)])
                  for size in points]
    _, intercept = np.polyfit(1.0 / points, values, 1)
    return float(intercept)


def _subset_fid_function(real: np.ndarray, fake: np.ndarray
                         ) -> Callable[[np.ndarray, np.ndarray], float]:
    """(rows of real, rows of fake) -> their FID: from Gram matrices where every subset is
    below the dimension and the Grams are small, else from the features."""
    if min(len(real), len(fake)) <= real.shape[1] and max(len(real), len(fake)) <= GRAM_ROWS:
        return SubsetGrams.of(real, fake).distance
    return lambda rows_real, rows_fake: frechet_distance(real[rows_real], fake[rows_fake])
