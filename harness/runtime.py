"""How a trial's torch runs: its one device, its precision, its threads, deterministic kernels.

A trial gets one device from Ray's assignment (`resources.gpus_per_trial`: Ray sets
CUDA_VISIBLE_DEVICES per worker) and every stage uses it: stage-1 training and evaluation,
stage-2 training, sampling and decoding, gDDCM and the metric networks. It is decided here,
in `Runtime.for_trial`, and passed down; spreading one trial over several GPUs (Ray Train)
would change this module only.

Under `deterministic_torch` the same config and seed give the same numbers on one machine.
What stays machine-dependent (BLAS and CPU kernels, the number of threads a reduction is
split over, the torch version) is described in the README's "Regression gate" section.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.config import ResourcesConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def deterministic_torch(threads: int) -> None:
    """Fix the intra-op thread count and ask torch for deterministic kernels.

    `warn_only`: an op without a deterministic kernel (a few CUDA backward passes) warns
    instead of failing the trial; on CPU every op the pipeline uses is deterministic.
    """
    # cuBLAS reads this when its first handle is made; it must precede any CUDA work.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def trial_device() -> torch.device:
    """CUDA when this process can see a GPU (Ray sets CUDA_VISIBLE_DEVICES per trial)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Runtime:
    """Where a trial's models run and in which arithmetic.

    `precision` is the autocast dtype of the models (training, sampling, decoding); fp16
    trains with a gradient scaler; bf16 and fp16 also let the remaining float32 matmuls and
    convolutions use TF32, which fp32 does not (fp32 stays exact float32 arithmetic). The
    metric networks never run under it (harness.metrics keeps them float32 without TF32).
    """

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    compile: bool = False

    @classmethod
    def for_trial(cls, resources: ResourcesConfig) -> Runtime:
        return cls(trial_device(), resources.precision, resources.compile)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    def numerics(self) -> dict[str, Any]:
        """What, beyond the config, changes a trained model's weights: nothing for plain fp32
        (so the cache keys of fp32 models do not depend on the runtime)."""
        fields: dict[str, Any] = {}
        if self.precision != "fp32":
            fields["precision"] = self.precision
        if self.compile:
            fields["compile"] = True
        return fields

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The models' forward passes in `precision`; TF32 for the float32 matmuls and
        convolutions left under bf16 and fp16, never under fp32."""
        lower = self.precision != "fp32"
        autocast = (torch.autocast(self.device.type, dtype=self.dtype) if lower
                    else contextlib.nullcontext())
        cudnn = torch.backends.cudnn
        matmul = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high" if lower else "highest")
        try:
            with autocast, cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                                       deterministic=cudnn.deterministic, allow_tf32=lower):
                yield
        finally:
            torch.set_float32_matmul_precision(matmul)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (its gradients underflow without it); disabled otherwise,
        where `scale(loss)` is the loss itself and `step(optimizer)` a plain step."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def compiled(self, module: nn.Module) -> nn.Module:
        """`module` through torch.compile when asked (its parameters are shared)."""
        return torch.compile(module) if self.compile else module

    def tags(self) -> dict[str, str]:
        """What a run records about where it ran."""
        tags = {"runtime.device": str(self.device), "runtime.precision": self.precision,
                "runtime.compile": str(self.compile).lower()}
        if self.device.type == "cuda":
            tags["runtime.device_name"] = torch.cuda.get_device_name(self.device)
        return tags


def peak_memory_mb(device: torch.device) -> float | None:
    """The device's peak allocated memory since the last reset, in MiB (None off CUDA)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
