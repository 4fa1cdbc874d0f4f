"""The harness's Inception extraction path: fused network, channels_last, batched, one pass
per image set; and the same network registered as a torch-fidelity feature extractor."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from tqdm import tqdm

from harness.metrics.inception import (
    EXTRACTOR_NAME,
    LOGITS,
    POOL3,
    SIZE,
    TAG,
    InceptionNet,
    preprocess,
)
from harness.metrics.precision import float32_exact
from harness.weights import WeightsStore
from harness.weights import store as default_store

# Small batches lose most when another process shares the 2 cores (OpenMP barriers wait on
# the descheduled thread); uncontended, 8 to 64 run within ~15% of each other.
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class Features:
    pool3: np.ndarray  # (N, 2048) float32
    logits: np.ndarray | None  # (N, 1008) float32, None without the logits layer


class ConvReLU(nn.Module):
    """A convolution (BatchNorm folded in) and its ReLU as one oneDNN call, on CPU."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args,
                                                       "relu", [], "")


def fuse(net: InceptionNet, device: torch.device | str = "cpu") -> InceptionNet:
    """A copy for inference: BatchNorm folded into each conv, conv+ReLU fused on CPU (oneDNN)."""
    fused = copy.deepcopy(net)
    one_call = torch.device(device).type == "cpu" and torch.backends.mkldnn.is_available() and (
        hasattr(torch.ops.mkldnn, "_convolution_pointwise"))
    for module in list(fused.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BasicConv2d):
                child.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(child.conv, child.bn)
                child.bn = nn.Identity()
                if one_call:
                    setattr(module, name, ConvReLU(child.conv))
    return fused.to(device, memory_format=torch.channels_last)


class InceptionExtractor:
    """Inception features of uint8 NHWC image sets: one batched pass per set on `device`, no
    autograd, in float32; the features come back as numpy arrays."""

    def __init__(self, path: Path, sha256: str, batch_size: int = DEFAULT_BATCH,
                 device: torch.device | str = "cpu") -> None:
        net = InceptionNet.from_file(path)
        self.has_logits = net.fc is not None
        self.device = torch.device(device)
        self.model = fuse(net, self.device)
        self.weights_sha256 = sha256
        self.tag = TAG
        self.batch_size = batch_size
        self.passes = 0  # image sets extracted so far (tests count reference passes with it)

    def extract(self, images: np.ndarray, progress: bool = False, desc: str = "Inception"
                ) -> Features:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 NHWC RGB images, got {images.dtype} "
                             f"{images.shape}")
        self.passes += 1
        pools, logits = [], []
        with torch.inference_mode(), float32_exact(self.device), \
                tqdm(total=len(images), desc=desc, unit="img", disable=not progress,
                     leave=False) as bar:
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(images[start:start + self.batch_size].copy())
                batch = batch.to(self.device).permute(0, 3, 1, 2)
                pool3, logit = self.model(preprocess(batch).contiguous(
                    memory_format=torch.channels_last))
                pools.append(pool3.cpu().numpy())
                if logit is not None:
                    logits.append(logit.cpu().numpy())
                bar.update(len(batch))
        return Features(np.concatenate(pools) if pools else np.zeros((0, 2048), np.float32),
                        np.concatenate(logits) if logits else None)


_EXTRACTORS: dict[tuple[str, str, str], InceptionExtractor] = {}


def get_extractor(weights: WeightsStore | None = None, device: torch.device | str = "cpu"
                  ) -> InceptionExtractor:
    """The extractor for the store's highest-ranked Inception weights on `device` (built once
    per file and device)."""
    found = (weights or default_store()).resolve("inception-pool3")
    key = (str(found.path), found.sha256, str(torch.device(device)))
    if key not in _EXTRACTORS:
        _EXTRACTORS.clear()  # one network in memory at a time
        _EXTRACTORS[key] = InceptionExtractor(found.path, found.sha256, device=device)
    return _EXTRACTORS[key]


class TorchFidelityInception(FeatureExtractorBase):
    """The same network and preprocessing as a torch-fidelity feature extractor (the plain path).

    `torch_fidelity.calculate_metrics(..., feature_extractor=EXTRACTOR_NAME)` uses it; weights
    come from `feature_extractor_weights_path`, else from the harness's weights store.
    """

    def __init__(self, name: str, features_list: list[str],
                 feature_extractor_weights_path: str | None = None, **kwargs: object) -> None:
        super().__init__(name, features_list)
        path = Path(feature_extractor_weights_path or default_store().resolve(
            "inception-pool3").path)
        self.net = InceptionNet.from_file(path)
        vassert(LOGITS not in features_list or self.net.fc is not None,
                f"{path} has no logits layer (pool3-only weights): Inception Score unavailable")

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return POOL3, LOGITS

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": LOGITS, "fid": POOL3, "kid": POOL3, "prc": POOL3}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vassert(x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3,
                "expecting uint8 Bx3xHxW images")
        pool3, logits = self.net(preprocess(x))
        features = {POOL3: pool3, LOGITS: logits}
        return tuple(features[name] for name in self.features_list)


if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, TorchFidelityInception)
