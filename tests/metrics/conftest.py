"""The real image set and its Inception features (weights provisioned from registry packages)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import load_dataset
from harness.metrics.extractor import Features, get_extractor
from harness.weights import WeightsStore
from tests.helpers import REPO
from tests.metrics.helpers import SIGMAS, N, noisy


@pytest.fixture(scope="session")
def real() -> np.ndarray:
    return load_dataset(REPO / "data_manifests" / "skimage_patches.yaml").eval[:N]


@pytest.fixture(scope="session")
def features(weights: WeightsStore, real: np.ndarray) -> dict[float, Features]:
    """Inception features of the real set (sigma 0) and of its noisy copies, computed once."""
    extractor = get_extractor(weights)
    return {sigma: extractor.extract(noisy(real, sigma) if sigma else real)
            for sigma in (0.0, *SIGMAS)}
