"""Tests of harness.metrics.sets: FID, KID, precision/recall, IS and the reference cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cache import ArtifactCache
from harness.metrics.extractor import Features, get_extractor
from harness.metrics.sets import (
    ReferenceKey,
    evaluate_sets,
    fid_low_rank,
    get_set_metric,
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
    # KID is torch-fidelity's unbiased MMD^2: on two copies of one set of m images it equals
    # -2 (mean k(x, x) - mean k(x, y)) / (m - 1) exactly (0 only in expectation over draws).
    pool3 = features[0.0].pool3.astype(np.float64)
    kernel = (pool3 @ pool3.T / pool3.shape[1] + 1) ** 3
    expected = -2 * (np.mean(np.diag(kernel)) - kernel.mean()) / (len(pool3) - 1)
    assert kid(features[0.0], features[0.0]) == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert abs(expected) < kid(features[0.0], features[SIGMAS[-1]]) / 5


def test_fid_and_kid_grow_with_noise(features: dict[float, Features]) -> None:
    fids = [fid(features[0.0], features[s]) for s in SIGMAS]
    kids = [kid(features[0.0], features[s]) for s in SIGMAS]
    assert fids == sorted(fids) and len(set(fids)) == len(fids), fids
    assert kids == sorted(kids) and len(set(kids)) == len(kids), kids


def test_low_rank_fid_equals_torch_fidelitys() -> None:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, 0.3, (40, 256)).astype(np.float32)
    b = (rng.gamma(2.0, 0.3, (30, 256)) * 1.2).astype(np.float32)
    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    expected = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert fid_low_rank(a, b) == pytest.approx(expected, rel=1e-6)


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


def test_is_without_logits_weights_is_unavailable_with_a_reason(
        weights: WeightsStore, real: np.ndarray) -> None:
    extractor = get_extractor(weights)
    before = extractor.passes
    results = evaluate_sets(None, real[:12], ["is"])
    assert [r.name for r in results] == ["is", "is_std"]
    assert all(r.value is None and "logits" in (r.unavailable_reason or "") for r in results)
    assert extractor.passes == before  # nothing to compute, so no Inception pass
