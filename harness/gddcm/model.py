"""What gDDCM tokenizes with: a trained denoiser, the marginal of its process (Eq. 8),
and the conversions between uint8 images and the space it diffuses in (stage-2 latents
E(x) * scale, or pixels in [-1, 1] for a pixel-space model).

On disk a tokenizer model is a folder holding `gddcm_model.json` (a card: the Stage2Config,
the data shape, the latent scale, the stage-1 cache entry or null for pixel space) beside
the denoiser's weights, e.g. a stage-2 cache entry (`ema.pt`); `write_card` writes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from harness.config import Stage1Config, Stage2Config
from harness.diffusion.schedules import NoiseSchedule, RectifiedFlow
from harness.errors import HarnessError
from harness.gddcm.marginal import DDPMMarginal, FlowMarginal, Marginal
from harness.training import to_model_range, to_uint8

CARD = "gddcm_model.json"
CARD_FORMAT = "gddcm-model-1"
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

MARGINALS: dict[str, Callable[[Stage2Config], Marginal]] = {
    "ddpm": lambda c: DDPMMarginal(NoiseSchedule.create(c.beta_schedule, c.T), c.prediction),
    "rectified_flow": lambda c: FlowMarginal(RectifiedFlow(c.T), c.prediction),
}


def marginal_for(config: Stage2Config) -> Marginal:
    """The Eq. 8 marginal of the process a stage-2 model was trained with."""
    return MARGINALS[config.process](config)


@dataclass
class TokenizerModel:
    denoiser: Denoiser
    marginal: Marginal
    data_shape: tuple[int, int, int]
    to_data: Callable[[np.ndarray], torch.Tensor]  # uint8 NHWC -> model space
    to_images: Callable[[torch.Tensor], np.ndarray]  # model space -> uint8 NHWC
    reference: str = ""  # recorded in token files: the model's folder / cache entry
    reference_data: torch.Tensor | None = None  # data draws for init strategy 3


def latent_model(stage1: torch.nn.Module, denoiser: torch.nn.Module, config: Stage2Config,
                 latent_shape: tuple[int, int, int], scale: float, reference: str = "",
                 batch_size: int = 64) -> TokenizerModel:
    """Tokenize stage-2 latents z = E(x) * scale; reconstructions are D(z / scale)."""
    from harness.generation import encode_images

    @torch.inference_mode()
    def to_images(z: torch.Tensor) -> np.ndarray:
        return np.concatenate([to_uint8(stage1.decode(z[i:i + batch_size] / scale))
                               for i in range(0, len(z), batch_size)])

    return TokenizerModel(denoiser, marginal_for(config), latent_shape,
                          lambda images: encode_images(stage1, images, batch_size) * scale,
                          to_images, reference)


def pixel_model(denoiser: Denoiser, config: Stage2Config, image_shape: tuple[int, int, int],
                reference: str = "") -> TokenizerModel:
    """Tokenize pixels in [-1, 1] directly."""
    return TokenizerModel(denoiser, marginal_for(config), image_shape, to_model_range,
                          to_uint8, reference)


def write_card(folder: Path, config: Stage2Config, data_shape: tuple[int, int, int],
               scale: float = 1.0, stage1_entry: Path | None = None,
               weights: str = "ema.pt") -> Path:
    """Describe the denoiser in `folder` so that `load_model(folder)` can rebuild it."""
    card = {"format": CARD_FORMAT, "stage2": config.model_dump(mode="json"),
            "data_shape": list(data_shape), "scale": scale, "weights": weights,
            "stage1": str(stage1_entry) if stage1_entry is not None else None}
    path = folder / CARD
    path.write_text(json.dumps(card, indent=2))
    return path


def _read_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD
    if not path.is_file():
        raise HarnessError(f"{folder}: no {CARD}; write one with harness.gddcm.model.write_card "
                           "(a stage-2 cache entry plus its Stage2Config and data shape)")
    card = json.loads(path.read_text())
    if card.get("format") != CARD_FORMAT:
        raise HarnessError(f"{path}: format {card.get('format')!r}, expected {CARD_FORMAT}")
    return card


def load_model(folder: str | Path) -> TokenizerModel:
    """The tokenizer model described by `folder/gddcm_model.json`."""
    from harness.models import build_stage1
    from harness.training_stage2 import build_fftd

    folder = Path(folder).resolve()
    card = _read_card(folder)
    config = Stage2Config.model_validate(card["stage2"])
    shape = tuple(card["data_shape"])
    denoiser = build_fftd(config, shape[0], shape[-1])
    denoiser.load_state_dict(torch.load(folder / card["weights"], weights_only=True))
    denoiser.eval()
    if card["stage1"] is None:
        return pixel_model(denoiser, config, shape, str(folder))
    stage1_dir = Path(card["stage1"])
    stage1 = build_stage1(Stage1Config.model_validate(
        yaml.safe_load((stage1_dir / "config.yaml").read_text())))
    stage1.load_state_dict(torch.load(stage1_dir / "model.pt", weights_only=True))
    return latent_model(stage1.eval(), denoiser, config, shape, card["scale"], str(folder))
