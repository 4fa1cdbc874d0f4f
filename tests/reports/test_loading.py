"""Loading a sweep and its trial runs from MLflow."""

from __future__ import annotations

import pytest

from harness.reports.loading import ReportError, load_sweep


def test_latest_sweep_by_default_and_a_named_one(store: str) -> None:
    assert load_sweep(store, "ablation").sweep_id == "sweep-new"
    old = load_sweep(store, "ablation", "sweep-old")
    assert old.sweep_id == "sweep-old" and len(old.runs) == 10  # the KILLED duplicate is dropped
    assert old.date == "2023-11-14 22:13 UTC" and old.commits == ["c0ffee1"]
    with pytest.raises(ReportError, match="no sweep 'nope'"):
        load_sweep(store, "ablation", "nope")
