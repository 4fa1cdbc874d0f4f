"""The metric networks' arithmetic: float32 on every device, whatever the caller has set."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch


@contextmanager
def float32_exact(device: torch.device | str) -> Iterator[None]:
    """No autocast (a trial's mixed precision) and no TF32 in cuDNN convolutions or matmuls:
    TF32 would move Inception features by ~1e-3 on GPUs. A no-op on the CPU defaults."""
    kind = torch.device(device).type
    autocast = (torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind)
                else nullcontext())
    matmul = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with autocast, torch.backends.cudnn.flags(
                enabled=True, deterministic=torch.backends.cudnn.deterministic,
                allow_tf32=False):
            yield
    finally:
        torch.set_float32_matmul_precision(matmul)
