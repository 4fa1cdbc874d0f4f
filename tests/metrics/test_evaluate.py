"""Tests of harness.metrics.evaluate: provenance of results, their MLflow fields, dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.metrics.evaluate import evaluate, evaluate_pairs
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import evaluate_sets
from harness.weights import WeightsStore
from tests.metrics.helpers import noisy


def test_evaluate_records_provenance_and_flattens_for_mlflow(weights: WeightsStore,
                                                             real: np.ndarray) -> None:
    results = evaluate_pairs(real[:4], noisy(real[:4], 8), ["psnr", "lpips"])
    assert results[1].extractor and results[1].weights_sha256 == weights.resolve(
        "lpips-alex").sha256
    fields = mlflow_fields([*results, *evaluate_sets(None, real[:12], ["is"])], "recon/")
    assert set(fields.metrics) == {"recon/psnr", "recon/lpips"}
    assert fields.tags["recon/lpips.weights_sha256"] == results[1].weights_sha256
    assert fields.tags["recon/psnr.num_images"] == "4"
    assert "logits" in fields.tags["recon/is.unavailable"]


def test_evaluate_dispatches_by_name(weights: WeightsStore, real: np.ndarray) -> None:
    with pytest.raises(KeyError, match="nope"):
        evaluate(real[:4], real[:4], ["psnr", "nope"])
    results = evaluate(real[:4], real[:4], ["l1", "ssim"])
    assert [(r.name, r.value) for r in results] == [("l1", 0.0), ("ssim", 1.0)]


def test_evaluate_passes_the_bootstrap_rounds_to_set_metrics(weights: WeightsStore,
                                                             real: np.ndarray) -> None:
    results = {r.name: r for r in evaluate(real[:8], noisy(real[:8], 16), ["kid", "psnr"],
                                           bootstrap=20)}
    assert results["kid"].interval is not None
    assert results["kid"].interval_method == "bootstrap 95%, 20 rounds over the generated set"
    assert results["kid_std"].interval is None and results["psnr"].interval is None
    fields = mlflow_fields(list(results.values()), "sample/")
    assert {"sample/kid_ci_low", "sample/kid_ci_high"} <= set(fields.metrics)
    assert not any(name.startswith("sample/psnr_ci") for name in fields.metrics)


def test_evaluate_on_a_cpu_device_gives_the_default_numbers(weights: WeightsStore,
                                                            real: np.ndarray) -> None:
    """A trial passes its runtime's torch.device; on the CPU every number is unchanged."""
    names, fake = ["fid", "kid", "lpips", "psnr"], noisy(real[:4], 16)
    plain = evaluate(real[:4], fake, names, bootstrap=5)
    on_cpu = evaluate(real[:4], fake, names, bootstrap=5, device=torch.device("cpu"))
    assert [(r.name, r.value, r.interval) for r in on_cpu] == [
        (r.name, r.value, r.interval) for r in plain]
