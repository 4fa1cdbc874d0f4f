"""The MLflow store that the report tests read, made once per session."""

from __future__ import annotations

import pytest

from tests.reports.helpers import ablation_trials, add_sweep, codebook_trials


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    add_sweep(uri, "ablation", "sweep-old", 1_700_000_000_000, ablation_trials(shift=-1.0))
    add_sweep(uri, "ablation", "sweep-new", 1_700_000_100_000, ablation_trials())
    add_sweep(uri, "codebook", "sweep-k", 1_700_000_200_000, codebook_trials())
    return uri
