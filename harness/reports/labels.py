"""Display names, units and directions of metrics and sweep axes, for headers and legends."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

# last path segment of a metric name -> (label, unit, better); the names the harness logs
KNOWN_METRICS: dict[str, tuple[str, str, str]] = {
    "fid": ("FID", "", "lower"),
    "rfid": ("rFID", "", "lower"),
    "kid": ("KID", "", "lower"),
    "is": ("IS", "", "higher"),
    "lpips": ("LPIPS", "", "lower"),
    "ssim": ("SSIM", "", "higher"),
    "psnr": ("PSNR", "dB", "higher"),
    "l1": ("L1", "", "lower"),
    "l2": ("L2", "", "lower"),
    "mse": ("MSE", "", "lower"),
    "precision": ("precision", "", "higher"),
    "recall": ("recall", "", "higher"),
    "loss": ("loss", "", "lower"),
    "params": ("params", "", "lower"),
    "flops": ("FLOPs", "", "lower"),
    "train_seconds": ("train time", "s", "lower"),
    "images_per_second": ("throughput", "img/s", "higher"),
    "samples_per_second": ("throughput", "samples/s", "higher"),
    "peak_memory_mb": ("peak memory", "MB", "lower"),
}
BOOKKEEPING = ("num_images", "cache_hit")
AXIS_LABELS = {"K": "codebook size K", "ddim_steps": "DDIM steps S", "p": "back-trace parameter p",
               "f": "compression factor f", "N": "tokens N", "T": "diffusion steps T",
               "eta": "DDIM η", "step": "training step"}
ARROWS = {"lower": "↓", "higher": "↑"}
LATEX_ARROWS = {"lower": r"$\downarrow$", "higher": r"$\uparrow$"}


def metric_info(name: str) -> tuple[str, str, str | None]:
    """(label, unit, better) of a metric name such as `recon/psnr`; better is None if unknown."""
    prefix, _, last = name.rpartition("/")
    if last == "fid" and prefix.endswith("recon"):
        return "rFID", "", "lower"
    if last in KNOWN_METRICS:
        return KNOWN_METRICS[last]
    if "loss" in last:
        return name, "", "lower"
    if last.endswith("_seconds"):
        return name, "s", "lower"
    return name, "", None


def is_bookkeeping(name: str) -> bool:
    return name.rpartition("/")[2] in BOOKKEEPING


def short_names(keys: list[str]) -> dict[str, str]:
    """Axis key -> its last dotted segment (`stage1.K` -> `K`), unless two axes share it."""
    lasts = [key.rpartition(".")[2] for key in keys]
    return {key: last if lasts.count(last) == 1 else key
            for key, last in zip(keys, lasts, strict=True)}


def axis_label(key: str) -> str:
    """A plot axis label for a param key: `stage1.K` -> 'codebook size K'."""
    last = key.rpartition(".")[2]
    return AXIS_LABELS.get(last, last)


def format_value(value: Any) -> str:
    """An axis value as a label: 0.5 -> '0.5', 1e-05 -> '1e-05', 256 -> '256'."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def slug(text: str) -> str:
    """A file-name-safe form of a metric or axis name: `recon/psnr` -> `recon-psnr`."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-") or "x"


def decimals_for(values: list[float], significant: int = 4) -> int:
    """Decimals that show the largest magnitude with `significant` digits (0 to 6)."""
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
    if not finite:
        return 3
    return max(0, min(6, significant - 1 - math.floor(math.log10(max(finite)))))
