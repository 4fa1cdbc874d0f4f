"""Console summary of a finished sweep: one line per trial, the reference rows, the arms
compared in words, and where to look next."""

from __future__ import annotations

from typing import Any

from harness.console import format_table
from harness.experiment.scheduling import SweepOutcome
from harness.metrics.catalog import describe as scored
from harness.reports.settings import metric_spec
from harness.reports.statistics import compare_to_best, describe
from harness.stages.references import ROW_LABELS
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
    for result in outcome.references.values():
        values = result.get("metrics", {})
        for key, label in ROW_LABELS.items():
            if any(name.startswith(key + "/") for name in values):
                rows.append([label + ("" if key == "real_data" else f" ({result['stage1']})"),
                             "reference", *[""] * len(swept),
                             *(values.get(f"{key}/{m}", "") for m in metric_names)])
        if result["status"] != "FINISHED":
            rows.append([f"reference rows ({result['stage1']})", result["status"],
                         *[""] * (len(swept) + len(metric_names))])
    return format_table(header, rows)


def arms(outcome: SweepOutcome, trials: list[Trial], metric: str) -> dict[str, list[float]]:
    """The finished trials' values of `metric` per arm (the swept values but the seed)."""
    found: dict[str, list[float]] = {}
    for trial in trials:
        result: dict[str, Any] = outcome.results.get(trial.trial_id, {})
        value = result.get("metrics", {}).get(metric)
        name = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in trial.swept.items()
                        if k != "seed") or "all"
        found.setdefault(name, [])
        if value is not None and result.get("status") == "FINISHED":
            found[name].append(float(value))
    return found


def comparison_lines(outcome: SweepOutcome, trials: list[Trial], metrics: list[str]
                     ) -> list[str]:
    """Each arm against the best, per ranked metric, in words (harness.reports.statistics);
    the warning about too few seeds once, at the end, and arms with one seed counted in one
    line rather than listed."""
    lines, caveats, single = [], [], 0
    for metric in metrics:
        spec = metric_spec(metric)
        values = arms(outcome, trials, metric)
        ranked = scored(metric) is not None and spec.better is not None
        if not ranked or len(values) < 2 or not any(values.values()):
            continue
        higher = spec.better == "higher"
        for line in describe(compare_to_best(values, higher), spec.label, higher):
            caveat = line.partition(": too few seeds: ")[2]
            if ": not testable: one seed in " in line:
                single += 1
            else:
                (caveats if caveat else lines).append(
                    f"too few seeds: {caveat}" if caveat else line)
    if single:
        lines.append(f"{single} comparisons not testable: one seed per arm, no spread over "
                     "seeds (the tables give each value's bootstrap interval; add seeds to "
                     "compare arms)")
    return lines + caveats[:1]


def print_outcome(outcome: SweepOutcome, trials: list[Trial],
                  metrics: list[str] | None = None) -> None:
    print(outcome_table(outcome, trials, metrics))
    comparisons = comparison_lines(outcome, trials, metrics or [])
    if comparisons:
        print("\narms against the best (over seeds):")
        print("\n".join(f"  {line}" for line in comparisons))
    for trial_id in outcome.failed:
        print(f"FAILED {trial_id}: {outcome.results[trial_id].get('error')} "
              "(traceback.txt in its MLflow run)")
    print(f"sweep {outcome.sweep_id}: parent run {outcome.parent_run_id} in {outcome.tracking_uri}")
    if outcome.interrupted:
        print("interrupted: run the same command with --resume to finish the sweep")
    ui = "harness ui" if outcome.tracking_uri.startswith("sqlite:") else outcome.tracking_uri
    print(f"open the MLflow UI: {ui}")
