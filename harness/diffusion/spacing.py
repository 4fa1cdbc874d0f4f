"""Which S of a discrete process's T timesteps a sampler visits (SampleConfig.timestep_spacing).

linspace   round(linspace(0, T-1, S)), the harness's DDIM grid (both ends of the chain)
leading    k * (T // S) for k = 0 .. S-1 (diffusers, Lin et al. 2024 Table 2; steps_offset 0)
trailing   round(T - k T / S) - 1 for k = 0 .. S-1 (diffusers; starts at T-1)
quadratic  floor(c i^2), c such that the last step is 0.8 T: DDIM's CIFAR-10 setting (Song et
           al. 2021, appendix D.2; `(np.linspace(0, np.sqrt(T * 0.8), S) ** 2).astype(int)` in
           the official code)

Each is S distinct integers in [0, T-1] for 1 <= S <= T, noisiest first.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.diffusion import SPACINGS


def spaced_timesteps(spacing: str, T: int, S: int) -> list[int]:
    """S distinct timesteps of 0..T-1 by `spacing`, from the noisiest to the cleanest."""
    if not 1 <= S <= T:
        raise ValueError(f"steps must be in 1..T={T}, got {S}")
    if spacing == "linspace":
        grid = torch.linspace(0, T - 1, S, dtype=torch.float64).round().long()
        return sorted(set(grid.tolist()), reverse=True)
    if spacing == "leading":
        return [k * (T // S) for k in range(S - 1, -1, -1)]
    if spacing == "trailing":
        # diffusers takes np.arange(T, 0, -T / S), which can hold S + 1 values in floating point
        return (np.round(T - np.arange(S) * (T / S)).astype(np.int64) - 1).tolist()
    if spacing == "quadratic":
        return quadratic_timesteps(T, S)[::-1]
    raise ValueError(f"unknown timestep spacing {spacing!r}; expected one of {SPACINGS}")


def quadratic_timesteps(T: int, S: int) -> list[int]:
    """The official DDIM code's quadratic grid, cleanest first. Where floor(c i^2) repeats
    (at small i once S^2 > 0.8 T) a step is raised to one past the one before, the least
    change that makes the S steps distinct, as the official code's repeats are zero steps."""
    steps: list[int] = []
    for t in (np.linspace(0, np.sqrt(T * 0.8), S) ** 2).astype(int).tolist():
        steps.append(max(t, steps[-1] + 1) if steps else t)
    return steps
