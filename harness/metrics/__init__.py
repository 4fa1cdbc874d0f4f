"""Metrics and feature extractors, registered by name (DESIGN section 6).

`registry` holds the pairwise metrics (psnr, ssim, l1 in `pairwise`, lpips in `perceptual`)
and `sets` the set metrics (FID, FID-infinity, KID, precision/recall, IS) over one Inception
pass per image set (`extractor`, `inception`), their formulas in `frechet` and `kernel`, their
intervals in `bootstrap`; `evaluate` is what trials call, `catalog` what a logged name means,
`result` how a result is logged, `images` reads image sets for `harness metrics`.
"""

from harness.metrics import pairwise, perceptual  # noqa: F401  (they register their metrics)
from harness.metrics.registry import (
    PAIRWISE,
    MetricUnavailable,
    PairwiseMetric,
    Provenance,
    get_pairwise,
    register_pairwise,
)

__all__ = ["PAIRWISE", "MetricUnavailable", "PairwiseMetric", "Provenance", "get_pairwise",
           "register_pairwise"]
