"""gDDCM overhead: per tokenization step, the cost of regenerating the step's codebook and
selecting by Eq. 14 (plus gathering eps_c), relative to one forward of the stage-2 FFTD at
the sizes of the gddcm_*.yaml experiments (their stage 2 on the embedded data: 4x8x8
latents, channels 32, channel_mult [1, 2], attention at 4; `--latent 4 16 16` for the
f = 2 latents of ablation_fusion.yaml), for K = 1024 and K = 16384 (target: at most 10% at
K = 1024); and the peak memory of a whole tokenization against N.

A step's codebook is shared by every image of the batch, so its cost is fixed per batch
while the forward grows with it: the figures are printed per batch size, the default
(`gddcm.batch_size`, which the gddcm_*.yaml experiments use) marked with *.
Each cost is timed back to back with a forward and the ratio is the median of the
per-repeat ratios, so a VM whose speed drifts moves both alike. The peak memory (max RSS)
is taken in a fresh process per N so the figures do not carry over.

    python benchmarks/gddcm_overhead.py
    python benchmarks/gddcm_overhead.py --K 1024 16384 --batch 32 128 --N 10 50 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from timing import paired_medians  # benchmarks/timing.py

from harness.config import GDDCMConfig, Stage2Config
from harness.diffusion.processes import process_of
from harness.models import build_stage2
from harness.tokenizer.algorithms import SelectTokens, Tokenizer
from harness.tokenizer.codebook import gather, select
from harness.tokenizer.times import resolve_times

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BATCH = GDDCMConfig.model_fields["batch_size"].default
CONFIG = Stage2Config(fusion="adaptive", channels=32, channel_mult=[1, 2],
                      attention_resolution=4, T=500, prediction="eps")


def step_ratios(forward: Callable[[], object], x: torch.Tensor, K: int, grid: int,
                steps: Iterator[int], repeats: int) -> tuple[float, float, float, float, float]:
    """(forward s, codebook+select s, its ratio, gather s, its ratio), each timed back to back
    with a forward and with a new codebook step every call, as in a real run; the ratios are
    medians of the per-repeat ratios."""
    index = select(x, 0, 0, K, grid)[0]
    fwd, encode, encode_ratio = paired_medians(
        forward, lambda: select(x, 0, next(steps), K, grid), repeats)
    _, decode, decode_ratio = paired_medians(
        forward, lambda: gather(index, 0, next(steps), K, tuple(x.shape)), repeats)
    return fwd, encode, encode_ratio, decode, decode_ratio


def overhead(K_values: list[int], batches: list[int], latent: tuple[int, int, int],
             repeats: int) -> None:
    model = build_stage2(CONFIG, latent[0], latent[-1]).eval()
    print(f"FFTD on {latent} latents; encoding pays codebook+select (it returns eps_c), "
          "decoding pays gather")
    print(f"{'batch':>7} {'forward':>9} {'K':>6} {'grid':>4} {'codebook+select':>16} "
          f"{'vs fwd':>7} {'gather':>8} {'vs fwd':>7}")
    steps = itertools.count()
    for batch in batches:
        x = torch.randn(batch, *latent)
        t = torch.full((batch,), 100, dtype=torch.long)
        forward = torch.inference_mode()(partial(model, x, t))
        mark = "*" if batch == DEFAULT_BATCH else " "
        for K, grid in itertools.product(K_values, (1, 4)):
            fwd, encode, encode_ratio, decode, decode_ratio = step_ratios(
                forward, x, K, grid, steps, repeats)
            print(f"{batch:>6}{mark} {fwd * 1e3:>6.1f} ms {K:>6} {grid:>4} "
                  f"{encode * 1e3:>13.1f} ms {encode_ratio:>7.1%} {decode * 1e3:>5.1f} ms "
                  f"{decode_ratio:>7.1%}")


def peak_child(N: int, K: int, batch: int, latent: tuple[int, int, int]) -> dict[str, float]:
    model = build_stage2(CONFIG, latent[0], latent[-1]).eval()
    process = process_of(CONFIG)
    cfg = GDDCMConfig(p=0.0, K=K, N=N, P=min(50, N), t_s=50, batch_size=batch, final_steps=5)
    tokenizer = Tokenizer(model, process, CONFIG.prediction, cfg, resolve_times(cfg, process))
    x = torch.randn(batch, *latent)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    chooser = SelectTokens(x, cfg.seed, K, 1)
    tokenizer.run(process.sigma(50) * torch.randn(x.shape), chooser)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"N": N, "steps": len(chooser.tokens), "before_mib": before / 1024,
            "peak_mib": peak / 1024, "seconds": seconds}


def peak_memory(N_values: list[int], K: int, batch: int, latent: tuple[int, int, int]
                ) -> None:
    print(f"\npeak RSS of a whole tokenization (p = 0, K = {K}, batch {batch}), one process "
          "per N:")
    print(f"{'N':>5} {'steps':>6} {'RSS before':>11} {'peak RSS':>9} {'growth':>8} {'s':>6}")
    for N in N_values:
        command = [sys.executable, __file__, "--child", str(N), "--K", str(K), "--batch",
                   str(batch), "--latent", *map(str, latent)]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['N']:>5} {r['steps']:>6} {r['before_mib']:>7.0f} MiB {r['peak_mib']:>5.0f} "
              f"MiB {r['peak_mib'] - r['before_mib']:>4.0f} MiB {r['seconds']:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, nargs="+", default=[1024, 16384],
                        help="codebook sizes to time")
    parser.add_argument("--N", type=int, nargs="+", default=[10, 50, 200],
                        help="token counts of the peak-memory runs")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 64, DEFAULT_BATCH],
                        help="images per batch (the peak-memory runs use the last)")
    parser.add_argument("--latent", type=int, nargs=3, default=[4, 8, 8],
                        metavar=("C", "H", "W"), help="latent shape the FFTD works on")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per figure")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)
    latent = (args.latent[0], args.latent[1], args.latent[2])
    if args.child is not None:
        print(json.dumps(peak_child(args.child, args.K[0], args.batch[-1], latent)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    overhead(args.K, args.batch, latent, args.repeats)
    peak_memory(args.N, args.K[0], args.batch[-1], latent)


if __name__ == "__main__":
    main()
