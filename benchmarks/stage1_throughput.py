"""Training throughput (images/s) of the default stage-1 config on this machine's CPU cores,
before and after the speed levers: torch threads, the OpenMP wait policy, channels_last,
oneDNN (mkldnn) on or off, and torch.compile.

Each variant runs in its own process (thread counts and the OpenMP wait policy are fixed when
the runtime starts) on the embedded 64x64 data. A step's time is its median over the measured
steps, separately before the adversarial warm-up ends (E, D, LPIPS) and after it (plus the
patch discriminator and the adaptive weight), so that other load on a shared machine shows as
spread, not as a shifted mean.

    python benchmarks/stage1_throughput.py                 # all variants
    python benchmarks/stage1_throughput.py --variants before channels_last --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORES = os.cpu_count() or 1

# name -> (environment, train_stage1 levers, disable oneDNN)
VARIANTS: dict[str, tuple[dict[str, str], dict[str, bool], bool]] = {
    "before": ({}, {"channels_last": False}, False),  # all cores, NCHW, eager, oneDNN
    "threads=1": ({"OMP_NUM_THREADS": "1"}, {"channels_last": False}, False),
    "omp_passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, {"channels_last": False}, False),
    "no_mkldnn": ({}, {"channels_last": False}, True),
    "compile": ({}, {"channels_last": False, "compile": True}, False),
    "channels_last": ({}, {"channels_last": True}, False),  # = after: train_stage1's default
    "channels_last+passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, {"channels_last": True}, False),
}


def measure(levers: dict[str, bool], no_mkldnn: bool, warmup: int, steps: int) -> dict:
    """Run in the child process: train the default config and time its steps."""
    import numpy as np
    import torch

    from harness.config import Stage1Config
    from harness.data import load_dataset
    from harness.runtime import Runtime
    from harness.stages.stage1 import SpeedLevers, train_stage1

    torch.backends.mkldnn.enabled = not no_mkldnn
    images = load_dataset(REPO / "data_manifests/skimage_patches.yaml").train
    phase = warmup + steps
    config = Stage1Config(train_steps=2 * phase, adversarial_start=phase, log_every=10**9)
    load = os.getloadavg()[0]
    compiled = levers.pop("compile", False)
    result = train_stage1(config, images, Runtime(compile=compiled),
                          levers=SpeedLevers(**levers))
    times = np.array(result.step_seconds)
    autoencoder, adversarial = times[warmup:phase], times[phase + warmup:]
    return {"threads": torch.get_num_threads(), "load_before": load,
            "first_step_s": float(times[0]),
            "ae_images_per_s": config.batch_size / float(np.median(autoencoder)),
            "adv_images_per_s": config.batch_size / float(np.median(adversarial)),
            "ae_step_spread": float(np.percentile(autoencoder, 90) / np.median(autoencoder)),
            "batch_size": config.batch_size}


def run_variant(name: str, warmup: int, steps: int, timeout: float) -> dict:
    env, levers, no_mkldnn = VARIANTS[name]
    command = [sys.executable, __file__, "--child", json.dumps([levers, no_mkldnn]),
               "--warmup", str(warmup), "--steps", str(steps)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=os.environ | env, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"took over {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1]) | {
        "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per phase")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per phase")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        levers, no_mkldnn = json.loads(args.child)
        print(json.dumps(measure(levers, no_mkldnn, args.warmup, args.steps)))
        return
    from harness.config import Stage1Config

    config = Stage1Config()
    print(f"default stage-1 config: {config.kind} f={config.f} channels={config.channels} "
          f"K={config.K} batch={config.batch_size}, 64x64 images, {CORES} CPU cores; "
          f"median over {args.steps} steps after {args.warmup} warm-up steps per phase")
    header = (f"{'variant':24} {'threads':>7} {'load':>5} {'1st step s':>10} "
              f"{'AE img/s':>9} {'+GAN img/s':>10} {'p90/med':>7}")
    print(header)
    print("-" * len(header))
    for name in args.variants:
        row = run_variant(name, args.warmup, args.steps, args.timeout)
        if "error" in row:
            print(f"{name:24} failed: {row['error']}")
            continue
        print(f"{name:24} {row['threads']:>7} {row['load_before']:>5.1f} "
              f"{row['first_step_s']:>10.2f} {row['ae_images_per_s']:>9.1f} "
              f"{row['adv_images_per_s']:>10.1f} {row['ae_step_spread']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
