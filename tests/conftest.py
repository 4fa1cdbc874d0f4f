"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_experiment


@pytest.fixture
def tiny_experiment(tmp_path: Path) -> Path:
    return write_experiment(tmp_path)
