"""Tests of harness.metrics.sets: FID, KID, precision/recall, IS, their bootstrap intervals and
the reference cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.cache import ArtifactCache
from harness.metrics.bootstrap import describe_interval, draw_counts
from harness.metrics.extractor import Features, get_extractor
from harness.metrics.sets import (
    SET_METRICS,
    ReferenceKey,
    evaluate_sets,
    get_set_metric,
    reference_features,
    score,
)
from harness.weights import WeightsStore
from tests.metrics.helpers import SIGMAS, noisy


def fid(a: Features, b: Features) -> float:
    return get_set_metric("fid").compute(a.pool3, b.pool3)["fid"]


def kid(a: Features, b: Features) -> float:
    return get_set_metric("kid").compute(a.pool3, b.pool3)["kid"]


def test_fid_of_a_set_against_itself_is_zero(features: dict[float, Features]) -> None:
    assert abs(fid(features[0.0], features[0.0])) < 1e-6
    assert fid(features[0.0], features[8.0]) > 1.0


def test_kid_of_a_set_against_itself_is_the_unbiased_estimators_value(
        features: dict[float, Features]) -> None:
    # KID is torch-fidelity's unbiased MMD^2, averaged over 100 pairs of subsets of m / 2 of
    # the m images, each drawn independently: on two copies of one set its expectation over
    # the subset draws is -2 (mean k(x, x) - mean k(x, y)) / (m - 1) exactly (0 only in
    # expectation over image sets); the 100-pair mean is within a few standard errors of it.
    pool3 = features[0.0].pool3.astype(np.float64)
    kernel = (pool3 @ pool3.T / pool3.shape[1] + 1) ** 3
    expected = -2 * (np.mean(np.diag(kernel)) - kernel.mean()) / (len(pool3) - 1)
    values = get_set_metric("kid").compute(features[0.0].pool3, features[0.0].pool3)
    assert values["kid_std"] > 0  # 100 different subset pairs, at N = 32
    assert abs(values["kid"] - expected) < 4 * values["kid_std"] / np.sqrt(100)
    # Small next to a strongly distorted set's KID (0.0265 against 0.115 on the eval crops of
    # skimage_patches since 60d464b; the bound was / 5 on the earlier crops).
    assert abs(expected) < kid(features[0.0], features[SIGMAS[-1]]) / 4


def test_fid_and_kid_grow_with_noise(features: dict[float, Features]) -> None:
    fids = [fid(features[0.0], features[s]) for s in SIGMAS]
    kids = [kid(features[0.0], features[s]) for s in SIGMAS]
    assert fids == sorted(fids) and len(set(fids)) == len(fids), fids
    assert kids == sorted(kids) and len(set(kids)) == len(kids), kids


def test_fid_inf_is_registered_on_pool3_and_ranks_noise(features: dict[float, Features]
                                                        ) -> None:
    spec = get_set_metric("fid_inf")
    assert spec.outputs == ("fid_inf",) and not spec.higher_is_better and spec.depends_on_n
    assert not spec.on_logits and spec.uses_real and spec.bootstrap is None
    values = [spec.compute(features[0.0].pool3, features[s].pool3)["fid_inf"]
              for s in (SIGMAS[0], SIGMAS[-1])]
    assert values[0] < values[1], values


def test_scores_with_intervals_are_declared() -> None:
    assert {name for name, spec in SET_METRICS.items() if spec.bootstrap} == {
        "fid", "rfid", "kid", "is"}
    assert get_set_metric("kid").min_images == 4  # two subsets of 2 images each


def test_is_interval_from_resampled_logits() -> None:
    logits = np.random.default_rng(0).normal(0, 3, (200, 1008)).astype(np.float32)
    values, interval = score(get_set_metric("is"), None, logits, draw_counts(200, 50))
    assert interval is not None and interval[0] < values["is"] < interval[1]
    assert score(get_set_metric("is"), None, logits)[1] is None  # no rounds, no interval


def test_precision_recall_in_unit_interval(features: dict[float, Features]) -> None:
    values = get_set_metric("pr").compute(features[0.0].pool3, features[8.0].pool3)
    assert all(0.0 <= values[k] <= 1.0 for k in ("precision", "recall", "f_score"))


def test_reference_statistics_cache_hit_does_no_second_pass(
        weights: WeightsStore, real: np.ndarray, tmp_path: Path) -> None:
    extractor = get_extractor(weights)
    cache = ArtifactCache(tmp_path)
    key = ReferenceKey("test-dataset-hash", "eval", 8)
    before = extractor.passes
    first = evaluate_sets(real[:8], noisy(real[:8], 16), ["fid", "kid"], cache, key)
    assert extractor.passes - before == 2  # real and fake
    second = evaluate_sets(real[:8], noisy(real[:8], 16), ["fid", "kid"], cache, key)
    assert extractor.passes - before == 3  # the fake set only: the reference came from the cache
    assert [r.value for r in first] == [r.value for r in second]
    assert all(r.num_images == 8 and r.num_reference == 8 for r in first)
    assert all(r.weights_sha256 == extractor.weights_sha256 and r.extractor for r in first)
    # Bootstrap intervals (100 rounds by default) on the scores, seeded; none on the spread.
    intervals = {r.name: r.interval for r in first}
    assert intervals == {r.name: r.interval for r in second}
    for name in ("fid", "kid"):
        low, high = intervals[name] or (np.nan, np.nan)
        assert low < next(r.value for r in first if r.name == name) < high
    assert intervals["kid_std"] is None
    assert first[0].interval_method == describe_interval(100)
    before = extractor.passes
    plain = evaluate_sets(real[:8], noisy(real[:8], 16), ["fid"], cache, key, bootstrap=0)
    assert extractor.passes - before == 1  # the intervals took no Inception pass of their own
    assert plain[0].interval is None and plain[0].value == first[0].value


def test_is_without_logits_weights_is_unavailable_with_a_reason(
        weights: WeightsStore, real: np.ndarray) -> None:
    extractor = get_extractor(weights)
    before = extractor.passes
    results = evaluate_sets(None, real[:12], ["is"])
    assert [r.name for r in results] == ["is", "is_std"]
    assert all(r.value is None and "logits" in (r.unavailable_reason or "") for r in results)
    assert extractor.passes == before  # nothing to compute, so no Inception pass


class ConstantExtractor:
    """Features of one value, computed on a named device (nothing runs)."""

    tag, weights_sha256 = "constant", "0" * 64

    def __init__(self, device: str, value: float) -> None:
        self.device, self.value = torch.device(device), value

    def extract(self, images: np.ndarray, progress: bool = False, desc: str = "") -> Features:
        return Features(np.full((len(images), 2), self.value, np.float32), None)


def test_reference_features_are_cached_per_device_type(tmp_path: Path) -> None:
    """Features from another kind of device differ in the last bits: each keeps its own
    entry, so a CPU run never reads a GPU's reference statistics (CPU keys are unchanged)."""
    cache, real = ArtifactCache(tmp_path), np.zeros((3, 4, 4, 3), np.uint8)
    first = reference_features(real, ConstantExtractor("cpu", 1.0), cache, None)
    again = reference_features(real, ConstantExtractor("cpu", 2.0), cache, None)
    gpu = reference_features(real, ConstantExtractor("cuda", 3.0), cache, None)
    assert first[0, 0] == again[0, 0] == 1.0 and gpu[0, 0] == 3.0


def test_per_class_kid_sees_samples_of_the_wrong_class_that_kid_does_not(
        weights: WeightsStore, features: dict[float, Features]) -> None:
    """Two classes, clean and heavily noised images: samples with the right labels score
    per-class KID near 0, the same samples with the labels swapped score high, and KID over
    the whole set cannot tell the two apart (it is the same set)."""
    from harness.metrics.sets import SetLabels, score_by_class

    both = np.concatenate([features[0.0].pool3, features[64.0].pool3])
    labels = np.repeat([0, 1], len(features[0.0].pool3))
    spec, extractor = get_set_metric("kid_per_class"), get_extractor(weights)
    right = score_by_class(spec, both, both, SetLabels(labels, labels, ("clean", "noisy")),
                           extractor)
    swapped = score_by_class(spec, both, both, SetLabels(labels, 1 - labels,
                                                         ("clean", "noisy")), extractor)
    assert [r.name for r in right] == ["kid_per_class", "kid_per_class/clean",
                                       "kid_per_class/noisy"]
    assert abs(right[0].value) < 0.05 and swapped[0].value > right[0].value + 0.08
    assert right[0].value == np.mean([r.value for r in right[1:]])
    assert right[1].num_images == right[1].num_reference == len(features[0.0].pool3)


def test_per_class_kid_without_labels_or_with_too_few_per_class_says_why(
        weights: WeightsStore, real: np.ndarray) -> None:
    from harness.metrics.sets import SetLabels

    unlabeled = evaluate_sets(real, real, ["kid_per_class"], weights=weights, bootstrap=0)
    assert unlabeled[0].value is None and "conditional model" in unlabeled[0].unavailable_reason
    few = np.zeros(len(real), int)
    few[:2] = 1
    sparse = evaluate_sets(real, real, ["kid_per_class"], weights=weights, bootstrap=0,
                           labels=SetLabels(few, few, ("many", "few")))
    assert sparse[0].value is None and "class few has 2" in sparse[0].unavailable_reason
