"""gDDCM overhead: per tokenization step, the cost of regenerating the step's codebook and
selecting by Eq. 14 (plus gathering eps_c), relative to one forward of the stage-2 FFTD at
the default embedded-data sizes (experiments/ablation_fusion.yaml: 4x16x16 latents,
channels 32, channel_mult [1, 2], attention at 8, batch 32), for K = 1024 and K = 16384
(target: at most 10% at K = 1024); and the peak memory of a whole tokenization against N.

Medians over repeated measurements; the peak memory (max RSS) is taken in a fresh process
per N so the figures do not carry over.

    python benchmarks/gddcm_overhead.py
    python benchmarks/gddcm_overhead.py --K 1024 16384 --N 10 50 200 --repeats 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from timing import median_seconds  # benchmarks/timing.py

from harness.config import Stage2Config
from harness.gddcm.algorithms import SelectTokens, Tokenizer
from harness.gddcm.codebook import gather, select
from harness.gddcm.config import GDDCMConfig, resolve_times
from harness.gddcm.model import marginal_for
from harness.training_stage2 import build_fftd

REPO = Path(__file__).resolve().parent.parent
LATENT = (4, 16, 16)
CONFIG = Stage2Config(fusion="adaptive", channels=32, channel_mult=[1, 2],
                      attention_resolution=8, T=500, prediction="eps")


def overhead(K_values: list[int], batch: int, repeats: int) -> None:
    model = build_fftd(CONFIG, LATENT[0], LATENT[-1]).eval()
    x = torch.randn(batch, *LATENT)
    t = torch.full((batch,), 100, dtype=torch.long)
    with torch.inference_mode():
        forward = median_seconds(lambda: model(x, t), repeats)
    print(f"FFTD forward (batch {batch}, latent {LATENT}): {forward * 1e3:.1f} ms")
    print("encoding pays codebook+select (it returns eps_c); decoding pays gather")
    print(f"{'K':>7} {'grid':>4} {'codebook+select':>16} {'vs fwd':>7} {'gather':>8} "
          f"{'vs fwd':>7}")
    steps = itertools.count()  # a fresh codebook every call, as in a real run
    for K in K_values:
        for grid in (1, 4):
            sel = median_seconds(partial(lambda K, g: select(x, 0, next(steps), K, g), K, grid),
                                 repeats)
            index = select(x, 0, 0, K, grid)[0]
            gat = median_seconds(partial(lambda K, i: gather(i, 0, next(steps), K,
                                                             tuple(x.shape)), K, index),
                                 repeats)
            print(f"{K:>7} {grid:>4} {sel * 1e3:>13.1f} ms {sel / forward:>7.1%} "
                  f"{gat * 1e3:>5.1f} ms {gat / forward:>7.1%}")


def peak_child(N: int, K: int, batch: int) -> dict[str, float]:
    model = build_fftd(CONFIG, LATENT[0], LATENT[-1]).eval()
    marginal = marginal_for(CONFIG)
    cfg = GDDCMConfig(p=0.0, K=K, N=N, P=min(50, N), t_s=50, batch_size=batch, final_steps=5)
    tokenizer = Tokenizer(model, marginal, cfg, resolve_times(cfg, marginal))
    x = torch.randn(batch, *LATENT)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    chooser = SelectTokens(x, cfg.seed, K, 1)
    tokenizer.run(marginal.sigma(50) * torch.randn(x.shape), chooser)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"N": N, "steps": len(chooser.tokens), "before_mib": before / 1024,
            "peak_mib": peak / 1024, "seconds": seconds}


def peak_memory(N_values: list[int], K: int, batch: int) -> None:
    print(f"\npeak RSS of a whole tokenization (p = 0, K = {K}, batch {batch}), one process "
          "per N:")
    print(f"{'N':>5} {'steps':>6} {'RSS before':>11} {'peak RSS':>9} {'growth':>8} {'s':>6}")
    for N in N_values:
        out = subprocess.run([sys.executable, __file__, "--child", str(N), "--K", str(K),
                              "--batch", str(batch)], capture_output=True, text=True,
                             check=True, cwd=REPO)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['N']:>5} {r['steps']:>6} {r['before_mib']:>7.0f} MiB {r['peak_mib']:>5.0f} "
              f"MiB {r['peak_mib'] - r['before_mib']:>4.0f} MiB {r['seconds']:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, nargs="+", default=[1024, 16384],
                        help="codebook sizes to time")
    parser.add_argument("--N", type=int, nargs="+", default=[10, 50, 200],
                        help="token counts of the peak-memory runs")
    parser.add_argument("--batch", type=int, default=32, help="images per batch")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per figure")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.child is not None:
        print(json.dumps(peak_child(args.child, args.K[0], args.batch)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    overhead(args.K, args.batch, args.repeats)
    peak_memory(args.N, args.K[0], args.batch)


if __name__ == "__main__":
    main()
