"""Does every stage of a trial run on the GPU Ray gives it, and how fast? (`make gpu-check`)

Runs tiny sweeps on the embedded 32x32 data with `harness run`, each in its own store and
cache, then prints per stage of each trial the device and precision it ran in, images/s and
peak GPU memory, read back from the MLflow runs:

  - gpu x1:    one trial with `gpus_per_trial: 1`
  - gpu x0.5:  two trials sharing one GPU (`gpus_per_trial: 0.5`), at the same time
  - cpu:       the same trial with no GPU, for comparison (`--no-cpu` leaves it out)

`--precision bf16` runs the GPU sweeps under autocast. On a machine without a GPU it says so
and exits 0.

    python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --precision bf16 --steps 1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parent.parent
# (stage, its images/s metric, its peak-memory metric), as the stages log them
STAGES = (("stage1 train", "stage1/train_images_per_second", "stage1/train_peak_memory_mb"),
          ("stage1 eval", "stage1/eval_images_per_second", None),
          ("stage2 train", "stage2/train_images_per_second", "stage2/train_peak_memory_mb"),
          ("sample+decode", "sample/images_per_second", "sample/peak_memory_mb"))


def experiment(name: str, gpus: float, seeds: list[int], precision: str, steps: int
               ) -> dict:
    return {
        "name": name, "dataset": str(REPO / "data_manifests/skimage_patches32.yaml"),
        "stage1": {"kind": "conv_ae", "f": 2, "channels": 32, "latent_channels": 4,
                   "train_steps": steps, "batch_size": 32, "adversarial_start": steps // 2,
                   "eval_images": 256, "eval_metrics": ["l1", "psnr", "ssim", "lpips"]},
        "stage2": {"fusion": "adaptive", "channels": 64, "channel_mult": [1, 2],
                   "attention_resolution": 8, "train_steps": steps, "batch_size": 64},
        "sample": {"ddim_steps": 25, "num_samples": 256, "batch_size": 64},
        "eval": {"metrics": ["fid", "kid"], "num_images": 256, "bootstrap": 0},
        "seeds": seeds,
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": gpus, "precision": precision,
                      "max_concurrent_trials": 2},
    }


def run_sweep(folder: Path, spec: dict) -> tuple[list, float]:
    """`harness run` on `spec` in `folder`; its runs (stage-1 job and trials) and seconds."""
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = os.environ | {"HARNESS_CACHE_DIR": str(folder / "cache")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--tracking-uri",
                           uri, "--no-progress", "--no-report", "--allow-failures"],
                          cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"{spec['name']}: harness run exited {done.returncode}")
    client = MlflowClient(uri)
    [found] = [e for e in client.search_experiments() if e.name == spec["name"]]
    runs = client.search_runs([found.experiment_id], "tags.stage != 'sweep'")
    return runs, seconds


def rows(label: str, runs: list) -> list[tuple[str, ...]]:
    """One row per stage of each trial (stage 1 from the stage-1 job's run)."""
    stage1 = [run for run in runs if run.data.tags.get("stage") == "stage1"]
    out = []
    for run in sorted((r for r in runs if r.data.tags.get("stage") == "trial"),
                      key=lambda r: r.info.run_name):
        if run.info.status != "FINISHED":
            out.append((label, run.info.run_name, "-", "-", "-", "FAILED", "-"))
            continue
        for stage, speed, memory in STAGES:
            source = stage1[0] if stage.startswith("stage1") and stage1 else run
            metrics, tags = source.data.metrics, source.data.tags
            prefix = "stage1/" if source is not run else ""
            peak = metrics.get(memory) if memory else None
            out.append((label, run.info.run_name, stage,
                        tags.get(f"{prefix}runtime.device", tags.get("runtime.device", "?")),
                        tags.get(f"{prefix}runtime.precision",
                                 tags.get("runtime.precision", "?")),
                        f"{metrics[speed]:.1f}" if speed in metrics else "-",
                        f"{peak:.0f}" if peak is not None else "-"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="resources.precision of the GPU sweeps (default fp32)")
    parser.add_argument("--steps", type=int, default=400,
                        help="training steps of each stage (default 400)")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU comparison")
    parser.add_argument("--cpu-only", action="store_true",
                        help="only the CPU sweep (checks this script where there is no GPU)")
    args = parser.parse_args()
    if args.cpu_only:
        sweeps = [("cpu", experiment("gpu_check_cpu", 0, [0], "fp32", args.steps))]
    elif not torch.cuda.is_available():
        print("gpu_check: no GPU on this machine (torch.cuda.is_available() is False, "
              f"torch {torch.__version__}); nothing to check")
        return 0
    else:
        print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}")
        sweeps = [("gpu x1", experiment("gpu_check_x1", 1, [0], args.precision, args.steps)),
                  ("gpu x0.5", experiment("gpu_check_shared", 0.5, [0, 1], args.precision,
                                          args.steps))]
    if not args.no_cpu and not args.cpu_only:
        sweeps.append(("cpu", experiment("gpu_check_cpu", 0, [0], "fp32", args.steps)))
    table = [("sweep", "trial", "stage", "device", "precision", "img/s", "peak MiB")]
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for label, spec in sweeps:
            folder = Path(tmp) / spec["name"]
            folder.mkdir()
            runs, seconds = run_sweep(folder, spec)
            print(f"{label}: {seconds:.0f} s")
            table += rows(label, runs)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
