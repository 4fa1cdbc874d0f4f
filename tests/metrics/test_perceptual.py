"""Tests of harness.metrics.perceptual: LPIPS on identical, distorted and too-small images."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import get_pairwise
from harness.metrics.evaluate import evaluate_pairs
from harness.weights import WeightsStore
from tests.metrics.helpers import noisy


def test_lpips_identical_is_zero_and_orders_distortions(weights: WeightsStore,
                                                        real: np.ndarray) -> None:
    lpips = get_pairwise("lpips")
    images = real[:8]
    assert lpips.fn(images, images) == pytest.approx(0.0, abs=1e-7)
    mild, strong = lpips.fn(images, noisy(images, 4)), lpips.fn(images, noisy(images, 32))
    assert 0 < mild < strong
    [small] = evaluate_pairs(images[:, :16, :16], images[:, :16, :16], ["lpips"])
    assert small.value is None and "31x31" in (small.unavailable_reason or "")
