"""Every experiment the repository ships validates fully: schema, sweep expansion, metric
names, sizes against the manifest and gDDCM times, in every profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config import load_experiment
from harness.sweep import expand
from tests.helpers import REPO

SHIPPED = sorted((REPO / "experiments").rglob("*.yaml"))


def profiles_of(path: Path) -> list[tuple[str, ...]]:
    names = list((yaml.safe_load(path.read_text()) or {}).get("profiles") or {})
    return [(), *((name,) for name in names)]


def test_the_experiments_folder_is_found() -> None:
    assert len(SHIPPED) >= 10 and any(path.parent.name == "ci" for path in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(REPO)))
def test_every_shipped_experiment_expands_in_every_profile(path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.chdir(REPO)
    for profiles in profiles_of(path):
        trials = expand(load_experiment(path, profiles))
        assert trials, (path, profiles)
