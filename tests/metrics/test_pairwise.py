"""Tests of harness.metrics.pairwise: PSNR against its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.metrics import get_pairwise


def test_psnr_matches_the_formula_on_a_known_mse() -> None:
    rng = np.random.default_rng(0)
    real = rng.integers(10, 246, (4, 16, 16, 3), dtype=np.uint8)
    sign = np.where(np.indices(real.shape).sum(0) % 2 == 0, 1, -1)
    fake = (real.astype(np.int16) + 3 * sign).astype(np.uint8)  # every pixel off by 3: MSE 9
    assert get_pairwise("psnr").fn(real, fake) == pytest.approx(10 * math.log10(255**2 / 9),
                                                                abs=1e-9)
