"""A frozen diffusers autoencoder as stage 1: `stage1: {kind: pretrained, path: DIR}`.

DIR is a folder an `AutoencoderKL` or a `VQModel` was saved to with `save_pretrained` (the
class from its config.json's `_class_name`). Nothing is trained: every parameter is frozen,
so `train_stage1` returns at once and the stage-1 job only evaluates and caches it. As in
diffusers' pipelines the latent is scaled, z = (E(x) - shift_factor) * scaling_factor, and
decoded as D(z / scaling_factor + shift_factor) (the shift only where the config has one);
E(x) is the posterior's mode for AutoencoderKL (deterministic latents, like `kl`), the
pre-quantization latent for VQModel, whose decode quantizes (LDM's VQ-reg, like `ivq_vae`).
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.vq_model import VQModel

from harness.config import Stage1Config
from harness.errors import HarnessError
from harness.models.autoencoders.base import Stage1Model, Stage1Output
from harness.models.pretrained_folder import read_folder

CLASSES: dict[str, type[AutoencoderKL] | type[VQModel]] = {"AutoencoderKL": AutoencoderKL,
                                                          "VQModel": VQModel}


class PretrainedAutoencoder(Stage1Model):
    def __init__(self, model: AutoencoderKL | VQModel, f: int, latent_channels: int) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.f, self.latent_channels = f, latent_channels
        self.scaling_factor = float(model.config.scaling_factor)
        self.shift_factor = float(getattr(model.config, "shift_factor", None) or 0.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, AutoencoderKL):
            z = self.model.encode(x).latent_dist.mode()
        else:
            z = self.model.encode(x).latents
        return (z - self.shift_factor) * self.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z / self.scaling_factor + self.shift_factor).sample

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        return Stage1Output(self.decode(self.encode(x)), x.new_zeros(()))

    def last_layer(self) -> torch.Tensor:
        raise NotImplementedError("a pretrained stage 1 is not trained")


def build(config: Stage1Config) -> PretrainedAutoencoder:
    """The folder's autoencoder, read from disk only (no hub)."""
    try:
        folder = read_folder(config.path or "")
    except ValueError as error:
        raise HarnessError(f"stage1.path: {error}") from None
    # (low_cpu_mem_usage needs accelerate, which the harness does not install)
    model = CLASSES[folder.class_name].from_pretrained(
        folder.path, local_files_only=True, torch_dtype=torch.float32, low_cpu_mem_usage=False)
    return PretrainedAutoencoder(model, folder.f, folder.latent_channels)
