"""Models by name: stage-1 autoencoders (`autoencoders/`) and stage-2 denoisers (`denoisers/`).

Each kind is a builder registered under its name, `kind` in the config section. The tables
name a builder as "module:function" and import it only when a model is built, so the schema
checks a kind (and a dry run plans a sweep) without importing torch or any model. A new kind
is one file with a builder plus one line here (or `STAGE1.register` / `STAGE2.register` as a
decorator from any module that is imported before the config is validated).

    stage 1: build(config: Stage1Config) -> Stage1Model
    stage 2: build(config: Stage2Config, latent_channels: int, latent_size: int) -> nn.Module
             whose forward(z_t, t) returns the prediction of stage2.prediction
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from harness.config import Stage1Config, Stage2Config


@dataclass
class _Entry:
    target: str | Callable[..., Any]  # "module:function", or the builder itself
    description: str


class Registry:
    """Name -> builder, imported on first use."""

    def __init__(self, what: str, entries: dict[str, tuple[str, str]]) -> None:
        self.what = what
        self._entries = {name: _Entry(target, description)
                         for name, (target, description) in entries.items()}

    def names(self) -> list[str]:
        return list(self._entries)

    def describe(self) -> str:
        return "; ".join(f"{name}: {entry.description}" for name, entry in self._entries.items())

    def register(self, name: str, description: str = ""
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._entries[name] = _Entry(builder, description or (builder.__doc__ or name))
            return builder
        return add

    def builder(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry.target, str):
            module, function = entry.target.split(":")
            entry.target = getattr(importlib.import_module(module), function)
        return entry.target


STAGE1 = Registry("stage-1 model", {
    "conv_ae": ("harness.models.autoencoders.conv_ae:build",
                "no regularizer, the cheap baseline"),
    "ivq_vae": ("harness.models.autoencoders.ivq_vae:build", "VQ-reg, seed 000 section 2.1"),
    "kl": ("harness.models.autoencoders.kl_ae:build", "KL-reg, seed 001 section 3.1"),
    "identity": ("harness.models.autoencoders.identity:build",
                 "no autoencoder (f = 1, E(x) = x in [-1, 1]): stage 2 diffuses in pixel space"),
})
STAGE2 = Registry("stage-2 model", {
    "fftd": ("harness.models.denoisers.fftd:build",
             "the feature-fusion transformer denoiser of seed 000 section 2.2"),
})


def build_stage1(config: Stage1Config) -> nn.Module:
    return STAGE1.builder(config.kind)(config)


def build_stage2(config: Stage2Config, latent_channels: int, latent_size: int) -> nn.Module:
    return STAGE2.builder(config.kind)(config, latent_channels, latent_size)
