"""KID: the unbiased MMD^2 with the cubic polynomial kernel on pool3 features (Binkowski et al.
2018, "Demystifying MMD GANs", sec. 4), over subsets (torch-fidelity) for the value
and its spread, and on whole weighted resamples of the generated set for bootstrap intervals.
"""

from __future__ import annotations

import numpy as np

from harness.metrics.blas import blas_threads_for

KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
KID_SEED = 2020  # torch-fidelity's default rng_seed
BLOCK = 1024  # kernel rows held at once


def kid_subset_size(num_real: int, num_fake: int) -> int:
    """min(1000, floor(min(N_real, N_fake) / 2)): 100 subsets of half the smaller set differ
    from each other, so their spread is a spread at any N (a subset as large as both sets is a
    permutation of them, all with one MMD^2)."""
    return min(KID_MAX_SUBSET, min(num_real, num_fake) // 2)


def kid_over_subsets(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """torch-fidelity's KID: mean and std of the unbiased MMD^2 over 100 pairs of subsets of
    kid_subset_size images, each drawn without replacement (seeded)."""
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    size = kid_subset_size(len(real), len(fake))
    with blas_threads_for(size):
        out = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real),
                                     verbose=False, kid_subset_size=size,
                                     kid_subsets=KID_SUBSETS, rng_seed=KID_SEED)
    return {"kid": out["kernel_inception_distance_mean"],
            "kid_std": out["kernel_inception_distance_std"]}


def cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x'y / d + 1)^3 (Binkowski et al. 2018, sec. 4; torch-fidelity's default)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_replicates(real: np.ndarray, fake: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The unbiased MMD^2 (Gretton et al. 2012, "A Kernel Two-Sample Test", lemma 6, eq. 3;
    its cross term runs over all pairs, as KID's does) of the reference set against each
    resample of the generated set given as counts (rounds, n); all ones: the whole set.

    Resampling with replacement puts copies of one feature at several positions; the U-statistic
    of the resample would count copy pairs (i, i) in the within-set term, whose kernel value
    k(x, x) exceeds the typical k(x, y), and bias every round upwards by about
    (k(x, x) - k(x, y)) / N (0.0017 on pool3 features of 256 skimage patches, whose KID against
    the train crops is 0.009: more than the rounds' standard deviation). Pairs of the same
    feature are left out, as the U-statistic leaves out the diagonal:
    within = (c'Kc - sum_i c_i^2 K_ii) / (N^2 - sum_i c_i^2), whose bootstrap expectation is the
    generated set's own U-statistic. Each round is the whole resample, not subsets of it: the
    mean of KID over all subset pairs is this statistic, and no subset noise enters the rounds.
    One pass over the kernel matrices (BLOCK rows at a time) serves every round.
    """
    with blas_threads_for(max(len(real), len(fake))):
        return _mmd2_replicates(real, fake, counts)


def _mmd2_replicates(real: np.ndarray, fake: np.ndarray, counts: np.ndarray) -> np.ndarray:
    real64, fake64 = real.astype(np.float64), fake.astype(np.float64)
    weights = counts.astype(np.float64)  # (rounds, n)
    n_real = len(real64)
    within_real = (_kernel_sum(real64, real64) - _kernel_diagonal(real64).sum()) / (
        n_real * (n_real - 1))
    cross_rows = np.empty(len(fake64))
    quadratic = np.empty((len(fake64), len(weights)))
    for start in range(0, len(fake64), BLOCK):
        rows = fake64[start:start + BLOCK]
        cross_rows[start:start + BLOCK] = _kernel_sum(rows, real64, axis=1)
        quadratic[start:start + BLOCK] = cubic_kernel(rows, fake64) @ weights.T
    n = weights.sum(1)
    squares = weights * weights
    ties = squares @ _kernel_diagonal(fake64)
    with np.errstate(divide="ignore", invalid="ignore"):  # one distinct feature: no pairs, nan
        within_fake = (np.einsum("bi,ib->b", weights, quadratic) - ties) / (
            n * n - squares.sum(1))
    cross = weights @ cross_rows / (n * n_real)
    return within_real + within_fake - 2 * cross


def _kernel_sum(x: np.ndarray, y: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Sum of k(x_i, y_j) over j (axis=1) or over all pairs, BLOCK rows of x at a time."""
    parts = [cubic_kernel(x[start:start + BLOCK], y).sum(axis=axis)
             for start in range(0, len(x), BLOCK)]
    return np.concatenate(parts) if axis is not None else np.sum(parts)


def _kernel_diagonal(x: np.ndarray) -> np.ndarray:
    return (np.einsum("ij,ij->i", x, x) / x.shape[1] + 1.0) ** 3
