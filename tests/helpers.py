"""Test helpers: a tiny experiment on procedural data, and the real `harness` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

TINY_MANIFEST = {
    "name": "tiny_shapes", "source": "synthetic_shapes", "resolution": 16,
    "splits": {"train": 64, "eval": 32}, "seed": 0,
}

TINY_EXPERIMENT = {
    "name": "tiny",
    "dataset": "tiny_shapes.yaml",
    "stage1": {"kind": "conv_ae", "f": 2, "channels": 8, "latent_channels": 2, "train_steps": 20,
               "batch_size": 8, "eval_images": 16, "eval_metrics": ["l1", "psnr", "ssim"]},
    "stage2": {"fusion": {"sweep": ["add", "concat"]}, "channels": 8, "channel_mult": [1, 2],
               "heads": 2, "attention_resolution": 4, "train_steps": 5, "batch_size": 8},
    "sample": {"ddim_steps": 3, "num_samples": 8, "batch_size": 8},
    "eval": {"metrics": [], "num_images": 16},  # set metrics (Inception) are tested elsewhere
    "seeds": [0, 1],
    "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 2},
    "profiles": {"quick": {"stage1": {"train_steps": 5}}},
}


def write_experiment(folder: Path, name: str = "tiny.yaml", **changes: object) -> Path:
    """Write the tiny manifest and an experiment (TINY_EXPERIMENT updated with changes)."""
    (folder / "tiny_shapes.yaml").write_text(yaml.safe_dump(TINY_MANIFEST))
    path = folder / name
    path.write_text(yaml.safe_dump({**TINY_EXPERIMENT, **changes}, sort_keys=False))
    return path


def harness_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "HARNESS_CACHE_DIR")}
    return env | {"PYTHONUNBUFFERED": "1"} | extra


def run_harness(args: list[str], cwd: Path, timeout: float = 300, **env: str
                ) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, the way a user would."""
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd,
                          env=harness_env(cwd, **env), capture_output=True, text=True,
                          timeout=timeout)
