"""Per-trial overhead of the harness: a Ray Tune sweep of M identical trials against the
same trial functions called directly in a loop, plus the fixed start-up cost.

Each trial trains its own stage-1 model (a distinct stage1.seed, so nothing is shared) for
about --work-seconds, then evaluates it: the real pipeline, not a sleep. Both sides run one
trial at a time with one torch thread, so the difference is scheduling and tracking.

    python benchmarks/sweep_overhead.py --trials 4 --work-seconds 60
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
import yaml

from harness.config import Stage1Config, load_experiment
from harness.data import load_dataset
from harness.experiment.jobs import TrialSpec, execute
from harness.experiment.scheduling import RunOptions, _init_ray, run_sweep
from harness.stages.stage1 import train_stage1
from harness.sweep import expand
from harness.tracking import STAGE_STAGE1, STAGE_TRIAL, create_sweep_run, init_store

REPO = Path(__file__).resolve().parent.parent
# The plain autoencoder and cheap evaluation, so that a trial's time is its training.
STAGE1 = {"kind": "conv_ae", "f": 4, "channels": 16, "batch_size": 16, "eval_images": 64,
          "eval_metrics": ["l1", "psnr", "ssim"]}
# A token stage 2 (a few steps of a small denoiser, a few samples, no set metrics).
CHEAP_STAGE2 = {"stage2": {"train_steps": 5, "batch_size": 8, "channels": 8,
                           "channel_mult": [1, 2], "heads": 2},
                "sample": {"ddim_steps": 3, "num_samples": 8, "batch_size": 8},
                "eval": {"metrics": [], "num_images": 64}}


def calibrate_steps(work_seconds: float) -> int:
    """Stage-1 steps that take about work_seconds on one thread."""
    torch.set_num_threads(1)
    images = load_dataset(REPO / "data_manifests/skimage_patches.yaml").train
    probe = train_stage1(Stage1Config(**STAGE1, train_steps=30), images)
    return max(1, round(work_seconds / (probe.seconds / 30)))


def write_experiment(folder: Path, trials: int, steps: int) -> Path:
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump({
        "name": "overhead", "dataset": str(REPO / "data_manifests/skimage_patches.yaml"),
        "stage1": {**STAGE1, "train_steps": steps, "seed": {"sweep": list(range(trials))}},
        **CHEAP_STAGE2, "seeds": [0],
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1}}))
    return path


def direct_loop(path: Path, folder: Path) -> float:
    """The same trials, called in-process one after another, logging to a store."""
    experiment = load_experiment(path)
    uri = f"sqlite:///{folder / 'direct.db'}"
    experiment_id = init_store(uri, "overhead")
    parent = create_sweep_run(uri, experiment_id, "direct", {}, {})
    start = time.perf_counter()
    for trial in expand(experiment):
        for kind in (STAGE_STAGE1, STAGE_TRIAL):
            spec = TrialSpec(kind, f"{kind}-{trial.trial_id}", trial.config.model_dump(
                mode="json"), trial.config_hash, trial.stage1_hash, trial.swept,
                str(experiment.dataset_path), str(folder / "direct-cache"), uri, experiment_id,
                parent, "direct", 1.0)
            result = execute(spec.to_dict())
            assert result["status"] == "FINISHED", result
    return time.perf_counter() - start


def sweep(path: Path, folder: Path) -> tuple[float, float]:
    """(start-up seconds: store and Ray, sweep seconds) through the harness."""
    experiment = load_experiment(path)
    uri = f"sqlite:///{folder / 'sweep.db'}"
    start = time.perf_counter()
    init_store(uri, "overhead")
    _init_ray(None, verbose=False)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    outcome = run_sweep(experiment, expand(experiment), RunOptions(
        tracking_uri=uri, cache_dir=folder / "sweep-cache", progress=False))
    assert not outcome.failed, outcome.results
    return startup, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4, help="M identical trials (default 4)")
    parser.add_argument("--work-seconds", type=float, default=60.0,
                        help="stage-1 training time per trial (default 60)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # as `harness run` does
    folder = Path(tempfile.mkdtemp(prefix="harness-overhead-"))
    steps = calibrate_steps(args.work_seconds)
    path = write_experiment(folder, args.trials, steps)
    print(f"{args.trials} trials of ~{args.work_seconds:.0f} s ({steps} stage-1 steps each), "
          "one at a time, 1 torch thread")
    direct = direct_loop(path, folder)
    startup, swept = sweep(path, folder)
    print(f"direct loop            {direct:8.1f} s")
    print(f"harness sweep          {swept:8.1f} s  (+ start-up {startup:.1f} s: store and Ray)")
    print(f"per-trial overhead     {(swept - direct) / args.trials:8.2f} s")
    print(f"overhead ratio         {(startup + swept) / direct:8.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
