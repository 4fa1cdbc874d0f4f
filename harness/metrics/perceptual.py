"""LPIPS: the `lpips` package, AlexNet, v0.1, inputs in [-1, 1], weights from the store; run
on the evaluation's device in float32.

torch is imported when LPIPS runs, not when the metric is registered, so that the registry
(and a dry run that checks metric names) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.metrics.pairwise import check_pair
from harness.metrics.registry import MetricUnavailable, Provenance, register_pairwise
from harness.weights import Resolved, WeightsUnavailable, store

if TYPE_CHECKING:
    import torch

TAG = "lpips-v0.1-alex/[-1,1]"
BATCH = 32
MIN_SIDE = 31  # smaller inputs vanish in AlexNet's third max-pool

_MODELS: dict[tuple[str, str], torch.nn.Module] = {}


def load_lpips(found: Resolved, device: torch.device | str = "cpu") -> torch.nn.Module:
    """lpips.LPIPS built without any download, then loaded from the resolved file, on
    `device` (cached: one network in memory at a time)."""
    import torch

    from harness.weights.formats import new_lpips, torchvision_alexnet_to_lpips

    key = (found.sha256, str(torch.device(device)))
    if key not in _MODELS:
        state = torch.load(found.path, map_location="cpu", weights_only=True)
        if found.kind == "torchvision-alexnet":
            state = torchvision_alexnet_to_lpips(state)
        model = new_lpips()
        model.load_state_dict(state)
        _MODELS.clear()
        _MODELS[key] = model.to(device)
    return _MODELS[key]


def _provenance() -> Provenance:
    try:
        found = store().resolve("lpips-alex")
    except WeightsUnavailable as error:
        return Provenance(unavailable_reason=str(error))
    return Provenance(TAG, found.sha256)


def to_lpips_input(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1] on `device` (converted on the device)."""
    import torch

    pixels = torch.from_numpy(images.copy()).to(device)
    return pixels.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1


@register_pairwise("lpips", higher_is_better=False, provenance=_provenance, on_device=True,
                   description="LPIPS v0.1 AlexNet (lpips package), inputs in [-1, 1]")
def lpips_distance(real: np.ndarray, fake: np.ndarray, device: torch.device | str = "cpu"
                   ) -> float:
    check_pair(real, fake)
    if min(real.shape[1:3]) < MIN_SIDE:
        raise MetricUnavailable(f"LPIPS AlexNet needs images of at least {MIN_SIDE}x{MIN_SIDE} "
                                f"pixels, got {real.shape[2]}x{real.shape[1]}")
    import torch

    from harness.metrics.precision import float32_exact

    model = load_lpips(store().resolve("lpips-alex"), device)
    distances = []
    with torch.inference_mode(), float32_exact(device):
        for start in range(0, len(real), BATCH):
            a = to_lpips_input(real[start:start + BATCH], device)
            b = to_lpips_input(fake[start:start + BATCH], device)
            distances.append(model(a, b).flatten())
    return float(torch.cat(distances).mean())
