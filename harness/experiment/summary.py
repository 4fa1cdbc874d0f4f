"""Console summary of a finished sweep: one line per trial, and where to look next."""

from __future__ import annotations

from harness.console import format_table
from harness.experiment.scheduling import SweepOutcome
from harness.sweep import Trial


def outcome_table(outcome: SweepOutcome, trials: list[Trial],
                  metrics: list[str] | None = None) -> str:
    """One row per trial: status, swept values, then `metrics` (default: every metric but
    the shared stage 1's)."""
    metric_names = metrics or sorted({name for result in outcome.results.values()
                                      for name in result.get("metrics", {})
                                      if not name.endswith(("num_images", "images_per_second"))
                                      and not name.startswith("stage1/")})
    swept = list(dict.fromkeys(key for trial in trials for key in trial.swept))
    header = ["trial", "status", *swept, *metric_names]
    rows = []
    for trial in trials:
        if trial.trial_id in outcome.skipped:
            status, metrics = "FINISHED (earlier)", {}
        else:
            result = outcome.results.get(trial.trial_id, {"status": "NOT RUN"})
            status, metrics = result["status"], result.get("metrics", {})
        rows.append([trial.trial_id, status, *(trial.swept.get(k, "") for k in swept),
                     *(metrics.get(m, "-") for m in metric_names)])
    return format_table(header, rows)


def print_outcome(outcome: SweepOutcome, trials: list[Trial],
                  metrics: list[str] | None = None) -> None:
    print(outcome_table(outcome, trials, metrics))
    for trial_id in outcome.failed:
        print(f"FAILED {trial_id}: {outcome.results[trial_id].get('error')} "
              "(traceback.txt in its MLflow run)")
    print(f"sweep {outcome.sweep_id}: parent run {outcome.parent_run_id} in {outcome.tracking_uri}")
    if outcome.interrupted:
        print("interrupted: run the same command with --resume to finish the sweep")
    ui = "harness ui" if outcome.tracking_uri.startswith("sqlite:") else outcome.tracking_uri
    print(f"open the MLflow UI: {ui}")
