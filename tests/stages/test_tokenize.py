"""A gDDCM trial end to end on a real store: tokenize the eval images with the trained stage 2,
log metrics and the token file, and decode that file in a second process bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from harness.config import load_experiment
from harness.errors import ConfigError
from harness.stages.tokenize import RECONSTRUCTIONS_ARTIFACT, TOKENS_ARTIFACT
from harness.sweep import expand
from harness.weights import WeightsStore
from tests.experiment.test_trial import run_in_process
from tests.helpers import TINY_EXPERIMENT, run_harness, write_experiment

STAGE1_32 = TINY_EXPERIMENT["stage1"] | {"f": 4, "train_steps": 5}  # LPIPS needs >= 32 px
STAGE2 = TINY_EXPERIMENT["stage2"] | {"fusion": "add", "train_steps": 5, "T": 50}
GDDCM = {"p": 0.0, "K": 16, "N": 12, "P": 4, "final_steps": 3, "batch_size": 4}


def tiny_gddcm(tmp_path: Path, **changes: object) -> Path:
    defaults = {"seeds": [0], "stage1": STAGE1_32, "stage2": STAGE2,
                "eval": {"metrics": ["kid"], "num_images": 8}}
    path = write_experiment(tmp_path, **(defaults | changes))
    manifest = tmp_path / "tiny_shapes.yaml"
    manifest.write_text(manifest.read_text().replace("resolution: 16", "resolution: 32"))
    return path


def test_gddcm_trial_logs_metrics_and_tokens_that_decode_bit_for_bit(
        tmp_path: Path, weights: WeightsStore) -> None:
    path = tiny_gddcm(tmp_path, gddcm=GDDCM | {"K": {"sweep": [16, 256]}})
    uri, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED", "FINISHED"], results
    client = MlflowClient(uri)
    small, large = (client.get_run(result["run_id"]) for result in results)
    for run, K in ((small, 16), (large, 256)):
        metrics = run.data.metrics
        assert 0 < metrics["lpips"] < 1 and metrics["psnr"] > 5 and metrics["l1"] > 0
        tokens = GDDCM["N"] + 1  # one token per step, plus init strategy 1's projection
        assert metrics["tokenize/bits_per_image"] == pytest.approx(tokens * np.log2(K))
        assert metrics["tokenize/images_per_second"] > 0
        assert "sample/num_images" not in metrics  # a tokenizer trial draws no samples
        # eval.metrics are computed on the reconstructions: 8 images are enough for KID
        assert "kid.unavailable" not in run.data.tags, run.data.tags
        assert math.isfinite(metrics["kid"]) and metrics["kid_std"] >= 0
        assert run.data.tags["kid.num_images"] == "8"
    assert large.data.metrics["stage2/cache_hit"] == 1  # one stage 2 serves every K
    client.download_artifacts(large.info.run_id, "tokens", str(tmp_path))
    decoded = tmp_path / "decoded.npz"
    result = run_harness(["tokenize", "decode", str(tmp_path / TOKENS_ARTIFACT), "--out",
                          str(decoded)], tmp_path, OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr
    with np.load(decoded) as again, np.load(tmp_path / RECONSTRUCTIONS_ARTIFACT) as logged:
        np.testing.assert_array_equal(again["images"], logged["images"])


def test_a_setting_the_algorithm_cannot_run_ends_as_a_failed_run_with_the_reason(
        tmp_path: Path, weights: WeightsStore) -> None:
    # Algorithm 1 in discrete time takes whole steps: N = 60 > T = 50 cannot run.
    path = tiny_gddcm(tmp_path, gddcm=GDDCM | {"p": 0.3, "N": {"sweep": [10, 60]}},
                      eval={"metrics": [], "num_images": 8})
    uri, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED", "FAILED"], results
    assert "gddcm.N" in results[1]["error"] and "whole timesteps" in results[1]["error"]
    failed = MlflowClient(uri).get_run(results[1]["run_id"])
    assert "lpips" not in failed.data.metrics and "tokenize/bits_per_image" not in (
        failed.data.metrics)


def test_an_invalid_setting_names_the_gddcm_key(tmp_path: Path) -> None:
    # T = 50 steps: T_r = 80 lies outside the model's range, caught at expansion.
    path = tiny_gddcm(tmp_path, gddcm=GDDCM | {"p": 0.3, "t_r": 80})
    with pytest.raises(ConfigError, match=r"tiny\.yaml: gddcm\.t_r: must lie in the model's "
                                          r"time range \[-1, 49\]"):
        expand(load_experiment(path))
    path = tiny_gddcm(tmp_path, gddcm=GDDCM | {"p": 1.5})
    with pytest.raises(ConfigError, match=r"tiny\.yaml: gddcm\.p: .*less than 1"):
        expand(load_experiment(path))
    path = tiny_gddcm(tmp_path, gddcm=GDDCM | {"grid": 3})
    with pytest.raises(ConfigError, match=r"gddcm\.grid: 3 does not divide the 8x8"):
        expand(load_experiment(path))


def test_identity_stage1_makes_stage2_a_pixel_space_model(tmp_path: Path,
                                                          weights: WeightsStore) -> None:
    path = tiny_gddcm(tmp_path, stage1=STAGE1_32 | {"kind": "identity", "f": 1},
                      stage2=STAGE2 | {"process": "rectified_flow", "prediction": "v",
                                       "attention_resolution": 8},
                      gddcm=GDDCM | {"K": 16})
    uri, [result] = run_in_process(path, tmp_path)
    assert result["status"] == "FINISHED", result
    run = MlflowClient(uri).get_run(result["run_id"])
    assert run.data.metrics["stage1/params"] == 0
    assert run.data.metrics["stage1/l1"] == 0  # E and D are exact inverses on uint8 images
    assert run.data.params["stage2.process"] == "rectified_flow"
    assert run.data.metrics["lpips"] > 0
    path = tiny_gddcm(tmp_path, stage1=STAGE1_32 | {"kind": "identity", "f": 2})
    with pytest.raises(ConfigError, match=r"stage1\.f: the identity stage 1 does not compress"):
        expand(load_experiment(path))
