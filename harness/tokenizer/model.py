"""What gDDCM tokenizes with: a trained denoiser, the process it was trained on (Eq. 8), what
it predicts, and the conversions between uint8 images and the space it diffuses in (stage-2
latents E(x) * scale, or pixels in [-1, 1]); `harness.stages.tokenize` builds one from a
trial's models or a stage-2 cache entry. The tokenizer runs on the denoiser's device.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from harness.diffusion.processes import Process
from harness.diffusion.samplers import Denoiser


@dataclass
class TokenizerModel:
    denoiser: Denoiser
    process: Process
    prediction: str  # eps, v or x0 (harness.diffusion.objectives)
    data_shape: tuple[int, int, int]
    to_data: Callable[[np.ndarray], torch.Tensor]  # uint8 NHWC -> model space
    to_images: Callable[[torch.Tensor], np.ndarray]  # model space -> uint8 NHWC
    reference: str = ""  # recorded in token files: the model's folder / cache entry
    reference_data: torch.Tensor | None = None  # data draws for init strategy 3

    @property
    def device(self) -> torch.device:
        """The device of the denoiser's weights; the CPU for a function or a module
        without any."""
        if isinstance(self.denoiser, nn.Module):
            for tensor in itertools.chain(self.denoiser.parameters(), self.denoiser.buffers()):
                return tensor.device
        return torch.device("cpu")
