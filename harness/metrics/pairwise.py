"""Pairwise image metrics with the settings of DESIGN section 6 (scikit-image, uint8 RGB).

Each returns the mean over image pairs. SSIM uses the Gaussian-weighted window of
Wang et al. 2004 (sigma 1.5, population covariance); PSNR and SSIM use data_range 255.
"""

from __future__ import annotations

import numpy as np

from harness.metrics.registry import register_pairwise


def check_pair(real: np.ndarray, fake: np.ndarray) -> None:
    if real.shape != fake.shape or real.ndim != 4 or real.shape[-1] != 3:
        raise ValueError(f"expected two NHWC RGB sets of one shape, got {real.shape} and "
                         f"{fake.shape}")
    if real.dtype != np.uint8 or fake.dtype != np.uint8:
        raise ValueError("metrics take uint8 images; quantize samples like real images first")


@register_pairwise("psnr", higher_is_better=True, description="PSNR in dB, data_range 255")
def psnr(real: np.ndarray, fake: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    check_pair(real, fake)
    return float(np.mean([peak_signal_noise_ratio(r, f, data_range=255)
                          for r, f in zip(real, fake, strict=True)]))


@register_pairwise("ssim", higher_is_better=True,
                   description="SSIM, Gaussian window sigma 1.5, data_range 255")
def ssim(real: np.ndarray, fake: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    check_pair(real, fake)
    return float(np.mean([
        structural_similarity(r, f, data_range=255, channel_axis=-1, gaussian_weights=True,
                              sigma=1.5, use_sample_covariance=False)
        for r, f in zip(real, fake, strict=True)]))


@register_pairwise("l1", higher_is_better=False, description="mean |x - y| on [0, 1] pixels")
def l1(real: np.ndarray, fake: np.ndarray) -> float:
    check_pair(real, fake)
    return float(np.mean(np.abs(real.astype(np.float64) - fake.astype(np.float64))) / 255.0)
