"""Tests of harness.data.tensors: uint8 images to model tensors and back."""

from __future__ import annotations

import numpy as np
import torch

from harness.data.tensors import to_model_range, to_uint8


def test_uint8_round_trip_is_exact() -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8(to_model_range(images)), images)


def test_model_range_layout_and_values() -> None:
    images = np.zeros((2, 3, 5, 3), np.uint8)
    images[1, 2, 4] = (0, 255, 51)
    x = to_model_range(images)
    assert x.shape == (2, 3, 3, 5) and x.dtype == torch.float32
    torch.testing.assert_close(x[1, :, 2, 4], torch.tensor([-1.0, 1.0, 51 / 127.5 - 1.0]))


def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0]).reshape(1, 1, 1, 6)
    assert to_uint8(x).ravel().tolist() == [0, 0, 128, 191, 255, 255]
