"""Initial states of the tokenizer (seed 002 Sec. 3.1.3), reproducible from the token file.

1 codebook projection: the row of the init codebook maximising eps^T x (Eq. 15), scaled to
  the start time: sigma(T) eps (its index is one extra token per grid cell);
2 Gaussian noise scaled to the start time: sigma(T) eps;
3 the forward marginal (Eq. 8) of a reference data sample x_ref: alpha(T) x_ref + sigma(T) eps
  (x_ref is a random draw of the data, stored in the token file as shared randomness);
4 zeros.
The noise of 2 and 3 is drawn per image from (seed, image index), independent of batching,
on CPU generators and then moved to the device the state is made on.
"""

from __future__ import annotations

import torch

from harness.diffusion.processes import Process
from harness.tokenizer.codebook import INIT_STEP, block_seed, gather, select

NOISE_STEP = -2  # generator stream of the init noise


def init_noise(seed: int, first: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Per-image standard normal noise for images first .. first + B - 1."""
    return torch.stack([torch.randn(shape[1:], generator=torch.Generator().manual_seed(
        block_seed(seed, NOISE_STEP, first + i))) for i in range(shape[0])])


def init_tokens(strategy: int, x: torch.Tensor, seed: int, K: int, grid: int
                ) -> torch.Tensor | None:
    """Strategy 1's indices (B, g*g) by Eq. 15; None for the others."""
    return select(x, seed, INIT_STEP, K, grid)[0] if strategy == 1 else None


def initial_state(strategy: int, process: Process, t: float, shape: tuple[int, ...],
                  seed: int, K: int, first: int, tokens: torch.Tensor | None,
                  reference: torch.Tensor | None, device: torch.device | str | None = None
                  ) -> torch.Tensor:
    """x at the start time t for one batch, on `device` (default: the device of the tokens
    or the reference the strategy uses, else the CPU)."""
    if strategy == 1:
        assert tokens is not None
        return process.sigma(t) * gather(tokens, seed, INIT_STEP, K, shape).to(device)
    if strategy == 2:
        return process.sigma(t) * init_noise(seed, first, shape).to(device)
    if strategy == 3:
        assert reference is not None
        reference = reference.to(device)
        noise = init_noise(seed, first, shape).to(reference.device)
        return process.alpha(t) * reference + process.sigma(t) * noise
    if strategy == 4:
        return torch.zeros(shape, device=device)
    raise ValueError(f"init strategy must be 1..4, got {strategy}")
