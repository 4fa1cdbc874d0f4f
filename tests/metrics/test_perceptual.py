"""Tests of harness.metrics.perceptual: LPIPS on identical, distorted and too-small images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.metrics import get_pairwise
from harness.metrics.evaluate import evaluate_pairs
from harness.metrics.perceptual import to_lpips_input
from harness.metrics.precision import float32_exact
from harness.weights import WeightsStore
from harness.weights.formats import new_lpips
from tests.metrics.helpers import noisy
from tests.models.meta import META


def test_lpips_identical_is_zero_and_orders_distortions(weights: WeightsStore,
                                                        real: np.ndarray) -> None:
    lpips = get_pairwise("lpips")
    images = real[:8]
    assert lpips.fn(images, images) == pytest.approx(0.0, abs=1e-7)
    mild, strong = lpips.fn(images, noisy(images, 4)), lpips.fn(images, noisy(images, 32))
    assert 0 < mild < strong
    [small] = evaluate_pairs(images[:, :16, :16], images[:, :16, :16], ["lpips"])
    assert small.value is None and "31x31" in (small.unavailable_reason or "")


def test_lpips_runs_on_the_device_it_is_given() -> None:
    model = new_lpips().to(META)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    a, b = to_lpips_input(images, META), to_lpips_input(images, META)
    with torch.inference_mode(), float32_exact(META):
        assert model(a, b).device == META


def test_lpips_on_a_cpu_device_is_the_default_in_float32(weights: WeightsStore,
                                                         real: np.ndarray) -> None:
    """evaluate passes its device to LPIPS; a caller's autocast does not reach the network."""
    lpips = get_pairwise("lpips")
    images, fake = real[:4], noisy(real[:4], 16)
    plain = lpips.fn(images, fake)
    [result] = evaluate_pairs(images, fake, ["lpips"], torch.device("cpu"))
    assert result.value == plain
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lpips.compute(images, fake, "cpu") == plain
