"""How a trial's torch runs: its device, its threads, deterministic kernels.

Under `deterministic_torch` the same config and seed give the same numbers on one machine.
What stays machine-dependent (BLAS and CPU kernels, the number of threads a reduction is
split over, the torch version) is described in the README's "Regression gate" section.
"""

from __future__ import annotations

import os

import torch


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
