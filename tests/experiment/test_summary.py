"""The summary `harness run` prints (trials, reference rows, the arms compared in words) and the
reference rows on the sweep run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from harness.config import TrialConfig
from harness.experiment.scheduling import SweepOutcome, log_reference_rows
from harness.experiment.summary import comparison_lines, outcome_table
from harness.sweep import Trial
from harness.tracking import create_sweep_run, init_store

SEEDS = 6


def outcome_of(means: dict[str, float]) -> tuple[SweepOutcome, list[Trial]]:
    """A finished sweep whose arms' FID over seeds is N(mean, 1)."""
    rng = np.random.default_rng(1)
    outcome = SweepOutcome("sweep", "sqlite:///x.db", "0", "parent")
    trials = []
    for fusion, mean in means.items():
        for seed in range(SEEDS):
            trial = Trial(len(trials), TrialConfig(name="t", dataset="d", seed=seed),
                          {"stage2.fusion": fusion, "seed": seed})
            outcome.results[trial.trial_id] = {"status": "FINISHED", "metrics": {
                "fid": float(mean + rng.normal()), "stage2/params": 1000.0}}
            trials.append(trial)
    return outcome, trials


def test_arms_from_one_distribution_are_not_significant_and_a_worse_one_is() -> None:
    outcome, trials = outcome_of({"add": 50.0, "concat": 50.2, "adaptive": 60.0})
    lines = comparison_lines(outcome, trials, ["fid", "stage2/params"])
    assert len(lines) == 2  # unscored columns (params) are not tested
    same, worse = lines
    assert same.startswith("FID (lower is better): fusion=") and "not significant" in same
    assert "fusion=adaptive vs" in worse and "worse by" in worse


def test_too_few_seeds_is_said_once() -> None:
    outcome, trials = outcome_of({"add": 50.0, "concat": 51.0})
    trials = [trial for trial in trials if trial.swept["seed"] < 2]
    lines = comparison_lines(outcome, trials, ["fid", "kid"])
    assert sum("too few seeds" in line for line in lines) == 1


def test_arms_with_one_seed_are_counted_in_one_line() -> None:
    outcome, trials = outcome_of({"add": 50.0, "concat": 51.0, "adaptive": 52.0})
    trials = [trial for trial in trials if trial.swept["seed"] == 0]
    assert comparison_lines(outcome, trials, ["fid"]) == [
        "2 comparisons not testable: one seed per arm, no spread over seeds (the tables give "
        "each value's bootstrap interval; add seeds to compare arms)"]


def test_reference_rows_follow_the_trials() -> None:
    outcome, trials = outcome_of({"add": 50.0})
    outcome.references["reference-1"] = {"status": "FINISHED", "stage1": "stage1 conv_ae f=4",
                                         "metrics": {"real_data/fid": 30.0,
                                                     "untrained/fid": 400.0}}
    table = outcome_table(outcome, trials, ["fid"]).splitlines()
    assert table[-2].split()[:3] == ["real", "data", "reference"]
    assert table[-1].startswith("untrained denoiser (stage1 conv_ae f=4)")
    assert "400" in table[-1]


def test_reference_rows_land_on_the_sweep_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = init_store(uri, "t")
    outcome = SweepOutcome("sweep", uri, experiment_id,
                           create_sweep_run(uri, experiment_id, "sweep", {}, {}))
    for name, f in (("stage1 conv_ae f=2", 2), ("stage1 conv_ae f=4", 4)):
        outcome.references[f"reference-{f}"] = {
            "status": "FINISHED", "stage1": name,
            "metrics": {"real_data/fid": 30.0, "untrained/fid": 400.0 + f}}
    log_reference_rows(MlflowClient(uri), outcome)
    metrics = MlflowClient(uri).get_run(outcome.parent_run_id).data.metrics
    assert metrics == {"reference/real_data/fid": 30.0,
                       "reference/untrained.stage1_conv_ae_f_2/fid": 402.0,
                       "reference/untrained.stage1_conv_ae_f_4/fid": 404.0}
