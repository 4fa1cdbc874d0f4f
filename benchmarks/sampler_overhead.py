"""Sampler overhead per step relative to one denoiser forward, and sampling images/s per S.

A sampler owns only its schedule and its `step`; everything else a sampling step costs is
the model. This prints, for the DDIM (eta 0 and 1) and DDPM updates, the median time of one
`step` on a batch against the median time of one FFTD forward on the same batch (target:
at most 5%), then the images/s of whole sampling runs (denoiser + sampler + decoder) for each
S. Sizes are those of experiments/ablation_fusion.yaml on the embedded 64x64 data.

    python benchmarks/sampler_overhead.py
    python benchmarks/sampler_overhead.py --batch 128 --threads 1 --steps 10 20 50 100 200
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import median_seconds  # benchmarks/timing.py

from harness.config import SampleConfig, Stage1Config, Stage2Config
from harness.diffusion.samplers import Sampler
from harness.models import build_stage1, build_stage2
from harness.stages.generate import generate, sampler_for
from harness.stages.stage2 import Stage2Model

STAGE1 = Stage1Config(kind="conv_ae", f=4, channels=16, latent_channels=4)
STAGE2 = Stage2Config(fusion="adaptive", channels=32, channel_mult=[1, 2],
                      attention_resolution=8, T=500)
LATENT = (4, 16, 16)


@torch.inference_mode()
def step_overhead(denoiser: torch.nn.Module, samplers: dict[str, Sampler], batch: int,
                  repeats: int) -> None:
    z = torch.randn(batch, *LATENT)
    t = torch.full((batch,), 250, dtype=torch.long)
    forward = median_seconds(lambda: denoiser(z, t), repeats)
    output = denoiser(z, t)
    generator = torch.Generator().manual_seed(0)
    print(f"one FFTD forward, batch {batch}: {forward * 1e3:.1f} ms")
    print(f"{'sampler':<14}{'step ms':>10}{'step / forward':>16}  (target <= 5%)")
    for name, sampler in samplers.items():
        seconds = median_seconds(lambda s=sampler: s.step(output, 250, 249, z, generator),
                                 repeats * 10)
        print(f"{name:<14}{seconds * 1e3:>10.3f}{seconds / forward:>15.2%}")


def images_per_second(stage1: torch.nn.Module, model: Stage2Model, steps: list[int],
                      batch: int) -> None:
    print(f"\n{'S':>5}{'eta':>6}{'images/s':>10}{'s / image':>11}  (denoiser + sampler + decoder)")
    for S in steps:
        for eta in (0.0, 1.0):
            sampler = sampler_for(SampleConfig(ddim_steps=S, eta=eta), model)
            start = time.perf_counter()
            generate(stage1, model, sampler, batch, batch, seed=0)
            seconds = time.perf_counter() - start
            print(f"{S:>5}{eta:>6.1f}{batch / seconds:>10.2f}{seconds / batch:>11.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="sampling batch (default 128)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, as a 1-CPU trial has (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards (default 5)")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 200],
                        help="DDIM step counts S for the images/s table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    denoiser = build_stage2(STAGE2, LATENT[0], LATENT[-1]).eval()
    model = Stage2Model(denoiser, STAGE2, 1.0, LATENT)
    samplers = {"ddim eta=0": sampler_for(SampleConfig(eta=0.0), model),
                "ddim eta=1": sampler_for(SampleConfig(eta=1.0), model),
                "ddpm": sampler_for(SampleConfig(sampler="ddpm"), model)}
    print(f"{args.threads} torch thread(s); FFTD {sum(p.numel() for p in denoiser.parameters())}"
          f" parameters on a {LATENT} latent")
    step_overhead(denoiser, samplers, args.batch, args.repeats)
    stage1 = build_stage1(STAGE1).eval()
    images_per_second(stage1, model, args.steps, args.batch)


if __name__ == "__main__":
    main()
