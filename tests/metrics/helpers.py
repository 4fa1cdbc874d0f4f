"""Helpers of the metrics tests: the image-set size, noise levels and noisy copies of a set."""

from __future__ import annotations

import numpy as np

N = 32  # images per set: Inception runs at a few images/s on 2 CPU cores
SIGMAS = (8.0, 24.0, 64.0)


def noisy(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(images + noise, 0, 255).round().astype(np.uint8)
