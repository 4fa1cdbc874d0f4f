"""Ray Tune scheduling of a sweep: stage-1 jobs first, then the trials, all in MLflow.

Ray runs locally, sized to the machine, unless `--address` / `RAY_ADDRESS` names a
cluster. The whole sweep is one `tune.Tuner` with reused workers: its searcher
(`harness.experiment.searcher`) hands out the stage-1 jobs, then each trial once its stage-1 job
has finished, and beside the trials that generate, one job measuring the reference rows of that
stage-1 model (their values end on the sweep run too); a trial whose stage-1 job failed gets a
FAILED run saying so. Per-trial CPUs
and GPUs come from the experiment's `resources`. Workers catch their own exceptions and
record them in MLflow, so a failing trial never stops the sweep. `--resume` reopens the
latest sweep of the experiment and runs only the trials with no FINISHED run.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.tracking import MlflowClient

from harness.cache import default_cache_dir
from harness.config import Experiment
from harness.errors import ConfigError
from harness.experiment.jobs import TrialSpec, execute
from harness.experiment.resources import check_reachable, check_resources
from harness.progress import EVERY_SECONDS
from harness.sweep import Trial, generates, run_names, shared_stage1, stage1_run_names
from harness.tracking import (
    STAGE_REFERENCE,
    STAGE_STAGE1,
    STAGE_TRIAL,
    child_runs,
    create_sweep_run,
    flatten,
    init_store,
    mark_stale_runs,
    sweep_runs,
    tracking_uri,
)

if TYPE_CHECKING:
    from harness.experiment.searcher import Stage1First

log = logging.getLogger(__name__)

METRIC_PREFIX = "harness."  # a trial's metrics in a Tune result, apart from Tune's own keys


@dataclass(frozen=True)
class RunOptions:
    resume: bool = False
    sweep_id: str | None = None
    address: str | None = None
    tracking_uri: str | None = None
    cache_dir: Path | None = None
    max_concurrent_trials: int | None = None
    verbose: bool = False
    progress: bool = True  # the bar and the trials' progress lines
    progress_seconds: float = EVERY_SECONDS  # between two progress lines of a trial's stage


@dataclass
class SweepOutcome:
    sweep_id: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> result
    # reference job id -> its result: `<row>/<metric>` values of the reference rows
    references: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # finished in an earlier attempt
    interrupted: bool = False

    @property
    def failed(self) -> list[str]:
        return [tid for tid, result in self.results.items() if result["status"] != "FINISHED"]


PROGRESS_KEY = "harness_progress"  # an intermediate result: one progress line of the trial


def _tune_entry(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: run one spec, its progress lines as intermediate
    results, then its outcome."""
    from ray import tune

    result = execute(config["spec"], lambda line: tune.report({PROGRESS_KEY: line}))
    tune.report({"harness_status": result["status"], "harness_error": result.get("error") or "",
                 **{METRIC_PREFIX + name: value
                    for name, value in result.get("metrics", {}).items()}})


def _init_ray(address: str | None, verbose: bool) -> None:
    key = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Results go to MLflow; Tune's own CSV/JSON/TensorBoard loggers only cost driver time
    # (the TensorBoard one took 11 s on its first result in benchmarks/sweep_overhead.py).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not verbose:  # a failed trial is one line of ours, not Tune's traceback
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    if address and (Path.home().joinpath(".ray", "auth_token").is_file()
                    or "RAY_AUTH_TOKEN" in os.environ):
        # `ray start` enables token auth by default, but a driver given an explicit address
        # only sends the token when the mode is set, and Ray reads it at import time.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return
    settings: dict[str, Any] = {"log_to_driver": verbose, "configure_logging": False}
    if address:
        if address not in ("auto", "local"):
            check_reachable(address, key)
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, **settings)
    else:
        # "local": a new Ray instance for this sweep, even where `ray start` left a cluster
        # (or its stale address file) on the machine.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 **settings)


def worker_died(spec: dict[str, Any], error_file: str | None) -> str:
    """The worker running `spec` died (killed, out of memory, crashed): its run, left
    RUNNING, ends FAILED with the reason; returns that reason (one line)."""
    last = ""
    if error_file and Path(error_file).is_file():
        lines = [line for line in Path(error_file).read_text().splitlines() if line.strip()]
        last = lines[-1].strip() if lines else ""
    reason = f"worker died: {last or 'no error from Ray'}"[:500]
    runs = MlflowClient(spec["tracking_uri"]).search_runs(
        [spec["experiment_id"]], filter_string=f"tags.sweep_id = '{spec['sweep_id']}' and "
        f"tags.trial_id = '{spec['trial_id']}'")
    mark_stale_runs(spec["tracking_uri"], runs, reason, status="FAILED")
    return reason


def _run_tuner(name: str, jobs: list[tuple[TrialSpec, list[TrialSpec]]], experiment: Experiment,
               options: RunOptions, storage: Path,
               on_done: Callable[[str, dict[str, Any]], None],
               on_progress: Callable[[str], None]) -> Stage1First:
    """Run the stage-1 jobs and their trials through one Tuner; `on_done` hears each
    outcome, `on_progress` each progress line. Returns the searcher, whose `blocked` holds
    the trials of failed jobs."""
    from ray import tune

    from harness.experiment.searcher import Stage1First  # after _init_ray: ray reads its env

    class Outcomes(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            if PROGRESS_KEY in result:
                on_progress(result[PROGRESS_KEY])
                return
            on_done(trial.config["spec"]["trial_id"], {
                "status": result["harness_status"], "error": result["harness_error"] or None,
                "metrics": {key.removeprefix(METRIC_PREFIX): value for key, value in
                            result.items() if key.startswith(METRIC_PREFIX)}})

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            spec = trial.config["spec"]
            reason = worker_died(spec, trial.error_file)
            on_done(spec["trial_id"], {"status": "FAILED", "error": reason})

    resources = experiment.spec.resources
    concurrency = options.max_concurrent_trials or resources.max_concurrent_trials
    trainable = tune.with_resources(_tune_entry, {"cpu": resources.cpus_per_trial,
                                                  "gpu": resources.gpus_per_trial})
    search = Stage1First(jobs)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search, num_samples=-1, max_concurrent_trials=concurrency,
            reuse_actors=True,
            trial_name_creator=lambda trial: trial.config["spec"]["trial_id"],
            trial_dirname_creator=lambda trial: trial.config["spec"]["trial_id"]),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=0, callbacks=[Outcomes()],
            failure_config=tune.FailureConfig(max_failures=0)))
    tuner.fit()
    return search


def run_sweep(experiment: Experiment, trials: list[Trial], options: RunOptions) -> SweepOutcome:
    """Schedule every trial of the experiment; return what happened to each. The sweep run is
    opened once Ray is up and ends FINISHED, FAILED or KILLED on every way out."""
    uri = tracking_uri(options.tracking_uri)
    experiment_id = init_store(uri, experiment.spec.name, experiment.spec.description)
    # Ray first: a cluster that cannot be reached or cannot run a trial leaves no run behind.
    _init_ray(options.address, options.verbose)
    import ray

    check_resources(experiment.spec.resources, ray.cluster_resources(), "the Ray cluster",
                    experiment.path)
    outcome = _open_sweep(experiment, uri, experiment_id, options)
    try:
        pending = _pending(trials, outcome, options.resume)
        if pending:
            _run_pending(experiment, pending, run_names(trials), options, outcome)
        else:
            log.info("nothing to run: every trial of sweep %s has a FINISHED run",
                     outcome.sweep_id)
    except BaseException as error:
        outcome.interrupted = True
        _close_sweep(outcome, f"driver stopped ({type(error).__name__}: {error}); re-run by "
                     "--resume")
        raise
    _close_sweep(outcome)
    return outcome


def _run_pending(experiment: Experiment, pending: list[Trial], names: dict[str, str],
                 options: RunOptions, outcome: SweepOutcome) -> None:
    """The stage-1 jobs and trials of `pending` through one Tuner; outcomes into `outcome`."""
    from tqdm import tqdm

    cache_dir = (options.cache_dir or default_cache_dir()).resolve()
    storage = cache_dir.parent / "ray_results"
    resources = experiment.spec.resources

    def spec_for(trial: Trial, kind: str, trial_id: str, swept: dict[str, Any],
                 run_name: str, real_data_row: bool = False) -> TrialSpec:
        return TrialSpec(kind, trial_id, trial.config.model_dump(mode="json"), trial.config_hash,
                         trial.stage1_hash, swept, str(experiment.dataset_path),
                         str(cache_dir), outcome.tracking_uri, outcome.experiment_id,
                         outcome.parent_run_id, outcome.sweep_id, resources.cpus_per_trial,
                         run_name, real_data_row, resources.precision, resources.compile,
                         options.progress_seconds)

    groups = shared_stage1(pending)
    job_names = stage1_run_names(groups)
    jobs = []
    real_data_row = True  # the first reference job measures it; it is one per sweep
    for key, members in groups.items():
        stage1_swept = {k: v for k, v in members[0].swept.items() if k.startswith("stage1.")}
        specs = [spec_for(trial, STAGE_TRIAL, trial.trial_id, trial.swept, names[trial.trial_id])
                 for trial in members]
        generating = [trial for trial in members if generates(trial.config)]
        if generating:  # its reference rows first, beside the trials
            specs.insert(0, spec_for(generating[0], STAGE_REFERENCE, f"reference-{key[:8]}",
                                     stage1_swept, job_names[key], real_data_row))
            real_data_row = False
        jobs.append((spec_for(members[0], STAGE_STAGE1, f"stage1-{key[:8]}", stage1_swept,
                              job_names[key]), specs))
    job_ids = {job.trial_id for job, _ in jobs}
    reference_ids = {spec.trial_id: spec.run_name for _, specs in jobs for spec in specs
                     if spec.kind == STAGE_REFERENCE}
    stage1_results: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(jobs) + len(reference_ids) + len(pending), desc="trials", unit="job",
               disable=not options.progress)

    def done(trial_id: str, result: dict[str, Any]) -> None:
        into = (stage1_results if trial_id in job_ids else
                outcome.references if trial_id in reference_ids else outcome.results)
        if trial_id in reference_ids:
            result = result | {"stage1": reference_ids[trial_id]}
        into[trial_id] = result
        bar.update(1)
        if result["status"] != "FINISHED":
            bar.write(f"{trial_id}: {result['status']}: {result.get('error')}")

    def progress(line: str) -> None:
        if options.progress:
            bar.write(line)

    search = _run_tuner(f"{outcome.sweep_id}-{int(time.time())}", jobs, experiment, options,
                        storage, done, progress)
    blocked = [(job, spec) for job, specs in search.blocked.items() for spec in specs
               if spec.kind == STAGE_TRIAL]
    # Tune ends early only on Ctrl-C: then some job or trial has no outcome.
    outcome.interrupted = (len(stage1_results) < len(jobs)
                           or len(outcome.results) + len(blocked) < len(pending))
    if not outcome.interrupted:
        for job, spec in blocked:
            outcome.results[spec.trial_id] = _record_skipped_trial(spec, stage1_results[job])
            bar.update(1)
    bar.close()


def _open_sweep(experiment: Experiment, uri: str, experiment_id: str, options: RunOptions
                ) -> SweepOutcome:
    """Reopen the sweep to resume, or start a new parent run."""
    if options.resume or options.sweep_id:
        parents = sweep_runs(uri, experiment_id)
        if options.sweep_id:
            parents = [run for run in parents if run.data.tags.get("sweep_id") == options.sweep_id]
        if parents:
            parent = parents[0]
            sweep_id = parent.data.tags["sweep_id"]
            stale = mark_stale_runs(uri, child_runs(uri, experiment_id, sweep_id),
                                    "left running by an interrupted driver; re-run by --resume")
            if stale:
                log.info("marked %d runs of the interrupted sweep as KILLED", stale)
            MlflowClient(uri).update_run(parent.info.run_id, status="RUNNING")
            return SweepOutcome(sweep_id, uri, experiment_id, parent.info.run_id)
        if options.sweep_id:
            raise ConfigError(experiment.path, "--sweep-id",
                              f"no sweep {options.sweep_id!r} in experiment {experiment.spec.name}")
        log.info("no earlier sweep of %s to resume; starting a new one", experiment.spec.name)
    sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    params = flatten({key: value for key, value in experiment.raw.items() if key != "profiles"})
    tags = {"experiment_file": str(experiment.path), "profiles": ",".join(experiment.profiles),
            "overrides": " ".join(experiment.overrides)}
    parent_run_id = create_sweep_run(uri, experiment_id, sweep_id, params, tags)
    return SweepOutcome(sweep_id, uri, experiment_id, parent_run_id)


def _pending(trials: list[Trial], outcome: SweepOutcome, resume: bool) -> list[Trial]:
    if not resume:
        return trials
    done = {run.data.tags.get("config_hash") for run in child_runs(
        outcome.tracking_uri, outcome.experiment_id, outcome.sweep_id, STAGE_TRIAL)
        if run.info.status == "FINISHED"}
    outcome.skipped = [trial.trial_id for trial in trials if trial.config_hash in done]
    return [trial for trial in trials if trial.config_hash not in done]


def _record_skipped_trial(spec: TrialSpec, stage1_result: dict[str, Any]) -> dict[str, Any]:
    """A trial whose stage-1 job failed still gets a FAILED run that says why."""
    reason = f"its stage-1 job failed: {stage1_result.get('error')}"
    with spec.open_run(spec.config) as run:
        raise RuntimeError(reason)
    return {"status": run.status, "error": reason}


def log_reference_rows(client: MlflowClient, outcome: SweepOutcome) -> None:
    """The reference rows' values on the sweep run, `reference/<row>/<metric>` (with the
    stage-1 model, `reference/<row>.<stage-1 job>/<metric>`, where there are several)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    several = len(outcome.references) > 1
    metrics = []
    for result in outcome.references.values():
        label = re.sub(r"[^\w.-]+", "_", result.get("stage1", "")).strip("_")
        for name, value in result.get("metrics", {}).items():
            row, _, metric = name.partition("/")
            if several and row != "real_data":
                row = f"{row}.{label}"
            metrics.append(Metric(f"reference/{row}/{metric}", float(value), now, 0))
    for start in range(0, len(metrics), 500):
        client.log_batch(outcome.parent_run_id, metrics=metrics[start:start + 500])


def _close_sweep(outcome: SweepOutcome,
                 reason: str = "interrupted (Ctrl-C); re-run by --resume") -> None:
    client = MlflowClient(outcome.tracking_uri)
    runs = child_runs(outcome.tracking_uri, outcome.experiment_id, outcome.sweep_id)
    if outcome.interrupted:
        mark_stale_runs(outcome.tracking_uri, runs, reason)
        runs = child_runs(outcome.tracking_uri, outcome.experiment_id, outcome.sweep_id)
    trial_runs = [run for run in runs if run.data.tags.get("stage") == STAGE_TRIAL]
    counts = {status: sum(run.info.status == status for run in trial_runs)
              for status in ("FINISHED", "FAILED", "KILLED")}
    for status, count in counts.items():
        client.log_metric(outcome.parent_run_id, f"sweep/trials_{status.lower()}", count)
    log_reference_rows(client, outcome)
    status = "KILLED" if outcome.interrupted else ("FAILED" if outcome.failed else "FINISHED")
    client.set_terminated(outcome.parent_run_id, status)
