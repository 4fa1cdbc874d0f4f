"""Gaussian toy data N(MU, S^2 I), whose exact denoiser is known in closed form, and tokenizer
models built on it for each process and prediction type."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.diffusion.processes import DDPM, Process, RectifiedFlow
from harness.diffusion.samplers import Denoiser
from harness.tokenizer.model import TokenizerModel

MU, S = 0.5, 0.8
SHAPE = (2, 4, 4)  # C, H, W of the toy data


@dataclass(frozen=True)
class Variant:
    """A process and what the model trained on it predicts."""

    process: Process
    prediction: str

    def __str__(self) -> str:
        return f"{self.process.name}{self.process.T}-{self.prediction}"


def ddpm(prediction: str = "eps", T: int = 100) -> Variant:
    return Variant(DDPM.create("cosine", T), prediction)


def flow(prediction: str = "v") -> Variant:
    return Variant(RectifiedFlow(100), prediction)


def output_coefficients(variant: Variant, t: float) -> tuple[float, float]:
    """(a, b) of the model output o = a x0 + b eps, written out here rather than taken from
    the library: v = alpha eps - sigma x0 for DDPM (Salimans & Ho), v = eps - x0 for the flow."""
    process = variant.process
    v = (-process.sigma(t), process.alpha(t)) if process.discrete else (-1.0, 1.0)
    return {"eps": (0.0, 1.0), "x0": (1.0, 0.0), "v": v}[variant.prediction]


def exact_output(variant: Variant, x_t: torch.Tensor, t: float) -> torch.Tensor:
    """The ideal model output (eps, x0 or v) for the Gaussian data at time t."""
    alpha, sigma = variant.process.alpha(t), variant.process.sigma(t)
    x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x_t - alpha * MU)
    eps = (x_t - alpha * x0) / sigma if sigma > 0 else torch.zeros_like(x_t)
    a, b = output_coefficients(variant, t)
    return a * x0 + b * eps


def gaussian_denoiser(variant: Variant) -> Denoiser:
    """The exact denoiser, fed the model time (a step index, or t * T for the flow)."""
    process = variant.process

    def model(x_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        t = float(time[0]) if process.discrete else float(time[0]) / process.T
        return exact_output(variant, x_t, t)
    return model


def toy_model(variant: Variant, reference: torch.Tensor | None = None) -> TokenizerModel:
    return TokenizerModel(gaussian_denoiser(variant), variant.process, variant.prediction, SHAPE,
                          torch.as_tensor, lambda x: x.numpy(), "toy", reference)


def gaussian_data(count: int, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    return MU + S * torch.randn(count, *shape, generator=torch.Generator().manual_seed(seed))
