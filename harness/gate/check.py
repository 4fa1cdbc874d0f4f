"""`harness check`: run small experiments, compare their metrics with a baseline, give a verdict.

Each experiment runs through the normal sweep machinery (Ray Tune, MLflow); the metrics of
its finished trial runs are keyed by experiment, trial label (the swept values, so a changed
config still meets its baseline) and metric, and compared under the tolerances of the YAML's
`check:` section. Only a change for the worse beyond tolerance fails; a metric that depends
on N (FID, IS, precision/recall) is compared only at equal N. Exit 0: every metric holds;
1: a regression or a missing metric; 2: a configuration error.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.common import TRACKING_HELP, add_experiment_arguments
from harness.config import CheckConfig, CheckTolerance, Experiment
from harness.console import format_table
from harness.errors import ConfigError
from harness.gate import baseline
from harness.gate.baseline import Measurement, Measurements

if TYPE_CHECKING:  # torch, mlflow and Ray load only when a check runs, not for --help
    from mlflow.entities import Run

    from harness.sweep import Trial

EXPERIMENT_SUFFIXES = (".yaml", ".yml")
OK, BETTER, REGRESSION, MISSING, NEW = "ok", "better", "REGRESSION", "MISSING", "new"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `check` on the `harness` command's subparsers."""
    check = subparsers.add_parser(
        "check", help="regression gate: run small experiments, compare with a baseline",
        description="Run each experiment, compare every gated metric of every trial with the "
        "baseline file under the tolerances of the YAML's `check:` section (only a change for "
        "the worse beyond tolerance fails; FID-like metrics only at equal N) and print a table. "
        "Exit 0 when all hold, 1 on a regression or a missing metric, 2 on a configuration "
        "error.")
    add_experiment_arguments(check, "an experiment YAML or a folder of them, e.g. "
                             "experiments/ci/")
    check.add_argument("--baseline", type=Path, metavar="FILE",
                       help="baseline JSON (default: baseline.json in PATH, or beside it)")
    check.add_argument("--update-baseline", action="store_true",
                       help="write the baseline from this run instead of comparing (the "
                            "file's other experiments are kept)")
    check.add_argument("--tracking-uri", metavar="URI", help=TRACKING_HELP)
    check.add_argument("--cache-dir", type=Path, metavar="DIR",
                       help="stage-1 cache to use (default: a fresh temporary folder, so every "
                            "model is trained by the code under test; the cache keys on the "
                            "config, not the code)")
    check.add_argument("--address", metavar="ADDR",
                       help="join an existing Ray cluster (default: $RAY_ADDRESS, else local)")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    check.set_defaults(handler=cmd_check)


@dataclass(frozen=True)
class Gate:
    """How one metric is judged: its tolerance and direction (None: unknown)."""

    tolerance: CheckTolerance
    higher_is_better: bool | None
    depends_on_n: bool

    def describe(self) -> str:
        bound = (f"abs {self.tolerance.abs:g}" if self.tolerance.abs is not None
                 else f"rel {self.tolerance.rel:.3g}")
        direction = {True: "higher", False: "lower", None: "?"}[self.higher_is_better]
        return f"{bound}, {direction} better"

    def allowed(self, reference: float) -> float:
        """How much worse than `reference` the metric may get."""
        if self.tolerance.abs is not None:
            return self.tolerance.abs
        assert self.tolerance.rel is not None
        return self.tolerance.rel * abs(reference)


def gate_for(metric: str, check: CheckConfig) -> Gate | None:
    """The gate of a logged metric, or None when the gate leaves it out: ignored, or neither
    declared in `check.metrics` nor scored by the metric registry (timings, counts)."""
    from harness.metrics.catalog import describe, registered_name

    short = registered_name(metric)
    if metric in check.ignore or short in check.ignore:
        return None
    declared = check.metrics.get(metric) or check.metrics.get(short)
    facts = describe(metric)
    if declared is None and facts is None:
        return None
    tolerance = declared or check.default
    if tolerance.better is not None:
        higher = tolerance.better == "higher"
    else:
        higher = facts.higher_is_better if facts is not None else None
    return Gate(tolerance, higher, facts.depends_on_n if facts is not None else False)


@dataclass(frozen=True)
class Verdict:
    text: str
    failed: bool


def judge(gate: Gate, before: Measurement | None, now: Measurement | None,
          why_missing: str | None = None) -> Verdict:
    """The verdict on one metric: direction-aware, within tolerance, N-aware."""
    if before is None:
        return Verdict(NEW, False)
    if now is None:
        return Verdict(f"{MISSING}: {why_missing or 'not logged by this run'}", True)
    if gate.depends_on_n and before.n != now.n:
        return Verdict(f"skipped: N differs ({before.n} vs {now.n})", False)
    if gate.higher_is_better is None:
        return Verdict("skipped: direction unknown (declare better: in check.metrics)", False)
    worse = before.value - now.value if gate.higher_is_better else now.value - before.value
    allowed = gate.allowed(before.value)
    if worse > allowed:
        return Verdict(REGRESSION, True)
    return Verdict(BETTER if -worse > allowed else OK, False)


@dataclass
class TrialResult:
    """What one trial of this run left in MLflow, under its label."""

    label: str
    metrics: dict[str, Measurement] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> reason
    problem: str | None = None  # why the trial has no metrics (failed, not run)


def trial_label(trial: Trial) -> str:
    """The swept values of a trial: stable when the config changes, unlike its hash."""
    return ", ".join(f"{key}={value}" for key, value in trial.swept.items()) or "-"


def _n_of(run: Run, metric: str) -> int | None:
    """N of a logged metric: its `<metric>.num_images` tag (a param in runs logged before
    provenance moved to tags), else the `<prefix>/num_images` metric."""
    text = run.data.tags.get(f"{metric}.num_images", run.data.params.get(f"{metric}.num_images"))
    if text is None and "/" in metric:
        value = run.data.metrics.get(f"{metric.rsplit('/', 1)[0]}/num_images")
        text = None if value is None else str(int(value))
    return int(text) if text is not None and text.isdigit() else None


def trial_results(runs: list[Run], trials: list[Trial], check: CheckConfig
                  ) -> dict[str, TrialResult]:
    """Gated metrics of each trial's run, by trial label."""
    by_id = {run.data.tags.get("trial_id"): run for run in runs}
    results: dict[str, TrialResult] = {}
    for trial in trials:
        label = trial_label(trial)
        if label in results:
            label = f"{label} #{trial.index}"
        result = results[label] = TrialResult(label)
        run = by_id.get(trial.trial_id)
        if run is None or run.info.status != "FINISHED":
            status = "not run" if run is None else run.info.status
            error = run.data.tags.get("error") if run is not None else None
            result.problem = f"trial {status}" + (f" ({error})" if error else "")
            continue
        for metric, value in run.data.metrics.items():
            if gate_for(metric, check) is not None:
                result.metrics[metric] = Measurement(value, _n_of(run, metric))
        result.unavailable = {key.removesuffix(".unavailable"): reason
                              for key, reason in run.data.tags.items()
                              if key.endswith(".unavailable")}
    return results


def compare(name: str, check: CheckConfig, before: dict[str, dict[str, Measurement]],
            now: dict[str, TrialResult]) -> list[list[object]]:
    """Table rows (experiment, trial, metric, baseline, current, delta, tolerance, verdict)
    plus, last in each row, whether it failed."""
    rows: list[list[object]] = []
    for label in [*before, *(label for label in now if label not in before)]:
        result = now.get(label)
        metrics = before.get(label, {})
        names = [*metrics, *(m for m in (result.metrics if result else {}) if m not in metrics)]
        for metric in names:
            reference = metrics.get(metric)
            current = result.metrics.get(metric) if result else None
            delta = (current.value - reference.value
                     if current is not None and reference is not None else "-")
            gate = gate_for(metric, check)
            if gate is None:  # in the baseline, but the YAML's check.ignore now leaves it out
                rows.append([name, label, metric, _cell(reference), _cell(current), delta,
                             "-", "skipped: ignored", False])
                continue
            why = ("no such trial in this run" if result is None
                   else result.problem or result.unavailable.get(metric))
            verdict = judge(gate, reference, current, why)
            rows.append([name, label, metric, _cell(reference), _cell(current), delta,
                         gate.describe(), verdict.text, verdict.failed])
    return rows


def _cell(measurement: Measurement | None) -> str:
    """The value, and the N it was computed at when known."""
    if measurement is None:
        return "-"
    n = f" @{measurement.n}" if measurement.n is not None else ""
    return f"{measurement.value:.6g}{n}"


def experiment_files(path: Path) -> list[Path]:
    """PATH itself, or the experiment YAMLs directly inside the folder PATH, sorted."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in EXPERIMENT_SUFFIXES)
        if not files:
            raise ConfigError(path, "", "no experiment YAML (*.yaml, *.yml) in this folder")
        return files
    if not path.is_file():
        raise ConfigError(path, "", "no such experiment file or folder")
    return [path]


def default_baseline(path: Path) -> Path:
    return (path if path.is_dir() else path.parent) / "baseline.json"


def _load(args: argparse.Namespace) -> list[Experiment]:
    from harness.config import load_experiment

    experiments = [load_experiment(file, args.profile, args.overrides)
                   for file in experiment_files(args.experiment)]
    seen: dict[str, Path] = {}
    for experiment in experiments:
        name = experiment.spec.name
        if name in seen:
            raise ConfigError(experiment.path, "name", f"{name!r} is also the name of "
                              f"{seen[name]}; each checked experiment needs its own")
        seen[name] = experiment.path
    return experiments


def _machine_note(recorded: dict[str, str]) -> str | None:
    here = baseline.machine()
    differs = [key for key in ("processor", "cpus", "torch", "numpy") if
               recorded.get(key) not in (None, here[key])]
    if not differs:
        return None
    changes = ", ".join(f"{key} {recorded[key]} -> {here[key]}" for key in differs)
    return (f"note: the baseline was made on another kind of machine ({changes}); values are "
            "exact only on the same kind: regenerate it there with --update-baseline")


def cmd_check(args: argparse.Namespace) -> int:
    from harness.experiment.scheduling import RunOptions, run_sweep
    from harness.sweep import expand, shared_stage1
    from harness.tracking import STAGE_TRIAL, child_runs

    experiments = _load(args)
    baseline_path = args.baseline or default_baseline(args.experiment)
    recorded: Measurements = {}
    if not args.update_baseline:
        recorded, machine = baseline.read(baseline_path)
        for experiment in experiments:
            if experiment.spec.name not in recorded:
                raise ConfigError(baseline_path, f"experiments.{experiment.spec.name}",
                                  f"no baseline for {experiment.path}; add it with "
                                  "--update-baseline")
        note = _machine_note(machine)
        if note:
            print(note)
    planned = [(experiment, expand(experiment)) for experiment in experiments]
    scratch = Path(tempfile.mkdtemp(prefix="harness-check-")) if args.cache_dir is None else None
    measured: dict[str, dict[str, TrialResult]] = {}
    try:
        for experiment, trials in planned:
            name = experiment.spec.name
            print(f"{name}: {len(trials)} trials, {len(shared_stage1(trials))} stage-1 jobs")
            options = RunOptions(tracking_uri=args.tracking_uri, address=args.address,
                                 cache_dir=args.cache_dir or scratch / "cache",
                                 progress=not args.no_progress)
            start = time.perf_counter()
            outcome = run_sweep(experiment, trials, options)
            print(f"{name}: sweep {outcome.sweep_id} took {time.perf_counter() - start:.0f} s")
            if outcome.interrupted:
                return 130
            runs = child_runs(outcome.tracking_uri, outcome.experiment_id, outcome.sweep_id,
                              STAGE_TRIAL)
            measured[name] = trial_results(runs, trials, experiment.spec.check)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.update_baseline:
        return _update(baseline_path, measured)
    rows = [row for experiment in experiments for row in compare(
        experiment.spec.name, experiment.spec.check, recorded[experiment.spec.name],
        measured[experiment.spec.name])]
    header = ["experiment", "trial", "metric", "baseline", "current", "delta", "tolerance",
              "verdict"]
    print(format_table(header, [row[:-1] for row in rows], rule=True))
    failed = [row for row in rows if row[-1]]
    print(f"{len(rows) - len(failed)} of {len(rows)} metrics hold; {len(failed)} failed "
          f"(baseline {baseline_path})")
    return 1 if failed else 0


def _update(path: Path, measured: dict[str, dict[str, TrialResult]]) -> int:
    problems = [f"{name} [{label}]: {result.problem}" for name, results in measured.items()
                for label, result in results.items() if result.problem]
    if problems:
        print("not writing the baseline: " + "; ".join(problems))
        return 1
    measurements = {name: {label: result.metrics for label, result in results.items()}
                    for name, results in measured.items()}
    baseline.write(path, measurements)
    count = sum(len(metrics) for trials in measurements.values() for metrics in trials.values())
    rows = [[name, label, metric, _cell(value)] for name, trials in measurements.items()
            for label, metrics in trials.items() for metric, value in metrics.items()]
    print(format_table(["experiment", "trial", "metric", "value"], rows, rule=True))
    print(f"wrote {count} metrics of {len(measurements)} experiments to {path}")
    return 0
