"""Models by name: stage-1 autoencoders (`autoencoders/`) and stage-2 denoisers (`denoisers/`).

Each kind is a builder registered under its name, `kind` in the config section. The tables
name a builder as "module:function" and import it only when a model is built, so the schema
checks a kind (and a dry run plans a sweep) without importing torch or any model
(harness.registry). A new kind is one file with a builder plus one line here (or
`STAGE1.register` / `STAGE2.register` as a decorator in that file, imported before the config
is validated), or, with no registration at all, a class named by its import path
(`kind: "package.module:ClassName"`, built and checked by `harness.models.imported`).

    stage 1: build(config: Stage1Config) -> Stage1Model
    stage 2: build(config: Stage2Config, latent_channels: int, latent_size: int) -> nn.Module
             whose forward(z_t, t) returns the prediction of stage2.prediction; a kind that
             implements `stage2.conditioning` (harness.models.conditioning) also takes
             num_classes, and its forward(z_t, t, labels)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from harness.config import Stage1Config, Stage2Config
    from harness.models.autoencoders.base import Stage1Model


STAGE1 = Registry("stage-1 model kind", {
    "conv_ae": ("harness.models.autoencoders.conv_ae:build",
                "no regularizer, the cheap baseline"),
    "ivq_vae": ("harness.models.autoencoders.ivq_vae:build", "VQ-reg, seed 000 section 2.1"),
    "kl": ("harness.models.autoencoders.kl_ae:build", "KL-reg, seed 001 section 3.1"),
    "identity": ("harness.models.autoencoders.identity:build",
                 "no autoencoder (f = 1, E(x) = x in [-1, 1]): stage 2 diffuses in pixel space"),
    "pretrained": ("harness.models.autoencoders.pretrained:build",
                   "a diffusers AutoencoderKL or VQModel from stage1.path, frozen (trains "
                   "nothing)"),
}, key="stage1.kind", adapter="harness.models.imported:stage1_from_class")
STAGE2 = Registry("stage-2 model kind", {
    "fftd": ("harness.models.denoisers.fftd:build",
             "the feature-fusion transformer denoiser of seed 000 section 2.2"),
    "unet2d": ("harness.models.denoisers.unet2d:build",
               "diffusers' UNet2DModel (the DDPM / ADM U-Net)"),
    "dit": ("harness.models.denoisers.dit:build",
            "a diffusion transformer on latent patches (diffusers' Transformer2DModel with "
            "adaLN-single on the timestep)"),
}, key="stage2.kind", adapter="harness.models.imported:stage2_from_class")


def build_stage1(config: Stage1Config) -> Stage1Model:
    return STAGE1.builder(config.kind)(config)


def build_stage2(config: Stage2Config, latent_channels: int, latent_size: int,
                 num_classes: int = 0) -> nn.Module:
    """The denoiser; a conditional one (`stage2.conditioning`) for `num_classes` labels."""
    builder = STAGE2.builder(config.kind)
    if config.conditional:
        return builder(config, latent_channels, latent_size, num_classes)
    return builder(config, latent_channels, latent_size)
