"""An empty weights store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.weights import WeightsStore


@pytest.fixture
def store(tmp_path: Path) -> WeightsStore:
    return WeightsStore(tmp_path / "weights", hub_dir=tmp_path / "hub")
