"""Images between the uint8 NHWC arrays of a dataset and the float NCHW tensors of a model.

Kept apart from the rest of harness.data, which must not import torch.
"""

from __future__ import annotations

import numpy as np
import torch


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.tensor(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC, rounded the way real images are stored."""
    pixels = images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()
