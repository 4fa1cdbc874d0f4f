"""The regression gate: verdict logic, the baseline file, and `harness check` end to end with
local Ray and a sqlite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.config import CheckConfig, CheckTolerance, load_experiment
from harness.errors import ConfigError
from harness.gate import baseline
from harness.gate.baseline import Measurement
from harness.gate.check import Gate, gate_for, judge
from tests.helpers import TINY_EXPERIMENT, run_harness, write_experiment

NO_CHECK = CheckConfig()


def gate(higher: bool | None, depends_on_n: bool = False, **bound: float) -> Gate:
    return Gate(CheckTolerance(**bound), higher, depends_on_n)


def test_only_a_change_for_the_worse_beyond_tolerance_fails() -> None:
    psnr = gate(True, abs=0.1)
    assert judge(psnr, Measurement(20.0, 64), Measurement(20.0, 64)).text == "ok"
    assert judge(psnr, Measurement(20.0, 64), Measurement(19.95, 64)).text == "ok"
    assert judge(psnr, Measurement(20.0, 64), Measurement(19.8, 64)).failed
    assert judge(psnr, Measurement(20.0, 64), Measurement(25.0, 64)).text == "better"
    l1 = gate(False, abs=0.1)  # lower is better: the same deltas judged the other way
    assert judge(l1, Measurement(20.0, 64), Measurement(19.8, 64)).text == "better"
    assert judge(l1, Measurement(20.0, 64), Measurement(20.2, 64)).failed


def test_relative_tolerance_scales_with_the_baseline() -> None:
    kid = gate(False, rel=0.1)
    assert not judge(kid, Measurement(0.02, 64), Measurement(0.0219, 64)).failed
    assert judge(kid, Measurement(0.02, 64), Measurement(0.0221, 64)).failed
    exact = gate(False, abs=0.0)
    assert not judge(exact, Measurement(0.02, 64), Measurement(0.02, 64)).failed
    assert judge(exact, Measurement(0.02, 64), Measurement(0.02 + 1e-12, 64)).failed


def test_n_dependent_metrics_are_compared_only_at_equal_n() -> None:
    fid = gate(False, depends_on_n=True, rel=0.05)
    verdict = judge(fid, Measurement(80.0, 64), Measurement(300.0, 32))
    assert verdict.text == "skipped: N differs (64 vs 32)" and not verdict.failed
    assert judge(fid, Measurement(80.0, 64), Measurement(300.0, 64)).failed
    kid = gate(False, rel=0.05)  # unbiased: compared whatever the N
    assert judge(kid, Measurement(0.01, 64), Measurement(0.03, 32)).failed


def test_missing_metric_fails_and_new_metric_does_not() -> None:
    verdict = judge(gate(True, abs=0.1), Measurement(20.0, 64), None, "trial FAILED")
    assert verdict.failed and verdict.text == "MISSING: trial FAILED"
    assert judge(gate(True, abs=0.1), None, Measurement(20.0, 64)).text == "new"


def test_direction_comes_from_the_registry_unless_declared() -> None:
    assert gate_for("recon/psnr", NO_CHECK).higher_is_better is True
    assert gate_for("stage1/l1", NO_CHECK).higher_is_better is False
    assert gate_for("kid", NO_CHECK).higher_is_better is False
    assert gate_for("stage1/rfid", NO_CHECK).depends_on_n
    assert not gate_for("kid", NO_CHECK).depends_on_n
    for unscored in ("kid_std", "stage1/train_seconds", "sample/images_per_second"):
        assert gate_for(unscored, NO_CHECK) is None
    check = CheckConfig.model_validate({
        "metrics": {"psnr": {"abs": 0.5}, "stage1/psnr": {"rel": 0.01},
                    "stage1/codebook_usage": {"abs": 0.1, "better": "higher"}},
        "ignore": ["ssim"]})
    assert gate_for("recon/psnr", check).tolerance.abs == 0.5
    assert gate_for("stage1/psnr", check).tolerance.rel == 0.01  # full name wins
    assert gate_for("stage1/codebook_usage", check).higher_is_better is True
    assert gate_for("recon/ssim", check) is None
    assert gate_for("stage1/l1", check).tolerance.abs == 0.0  # the default: exact


def test_a_tolerance_needs_exactly_one_bound(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, check={"metrics": {"psnr": {"abs": 0.1, "rel": 0.1}}})
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert error.value.key == "check.metrics.psnr" and "exactly one of abs and rel" in str(
        error.value)


def test_baseline_round_trips_exact_values_and_names_what_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    values = {"tiny": {"stage2.fusion=add": {"recon/psnr": Measurement(0.1 + 0.2, 16),
                                             "kid": Measurement(1e-17, None)}}}
    baseline.write(path, values)
    assert baseline.read(path)[0] == values
    data = json.loads(path.read_text())
    data["experiments"]["tiny"]["stage2.fusion=add"]["kid"]["value"] = "low"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as error:
        baseline.read(path)
    assert error.value.file == str(path)
    assert error.value.key == "experiments.tiny.stage2.fusion=add.kid.value"


# One stage-1 model shared by two arms, a minimal stage 2, no Inception metrics: the gate runs
# on the stage-1 metrics each trial logs. Stage 1 trains on L1 alone (no LPIPS, no GAN) for 100
# steps, which lifts PSNR from about 10.6 dB after one step to about 14.5 dB, so the deliberate
# regression (`--set stage1.train_steps=1`) is far beyond tolerance.
GATED = {"seeds": [0],
         "stage1": {**TINY_EXPERIMENT["stage1"], "train_steps": 100, "lr": 3.0e-3,
                    "perceptual_weight": 0.0, "adversarial_weight": 0.0},
         "stage2": {"fusion": {"sweep": ["add", "concat"]}, "channels": 8, "channel_mult": [1],
                    "train_steps": 2, "batch_size": 4},
         "sample": {"ddim_steps": 2, "num_samples": 4},
         "eval": {"metrics": [], "num_images": 16},
         "check": {"metrics": {"psnr": {"abs": 0.05}, "ssim": {"abs": 0.002}}}}


def trial_metrics(uri: str, sweep_index: int) -> dict[str, dict[str, float]]:
    """Metrics of the trial runs of one sweep (0: the oldest), by fusion."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny").experiment_id
    sweeps = sorted({run.data.tags["sweep_id"] for run in client.search_runs([experiment])})
    runs = client.search_runs([experiment], f"tags.sweep_id = '{sweeps[sweep_index]}' and "
                              "tags.stage = 'trial'")
    return {run.data.params["stage2.fusion"]: run.data.metrics for run in runs}


@pytest.mark.slow
def test_check_passes_unchanged_fails_on_a_regression_and_repeats_exactly(
        tmp_path: Path) -> None:
    path = write_experiment(tmp_path, **GATED)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    written = run_harness(["check", str(path), "--update-baseline", "--no-progress"],
                          cwd=tmp_path)
    assert written.returncode == 0, written.stdout + written.stderr
    recorded = baseline.read(tmp_path / "baseline.json")[0]["tiny"]
    assert set(recorded) == {"stage2.fusion=add", "stage2.fusion=concat"}
    assert {"stage1/psnr", "stage1/ssim", "stage1/l1"} <= set(recorded["stage2.fusion=add"])
    assert recorded["stage2.fusion=add"]["stage1/psnr"].n == 16

    unchanged = run_harness(["check", str(path), "--no-progress"], cwd=tmp_path)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert "REGRESSION" not in unchanged.stdout and "0 failed" in unchanged.stdout
    # Same config, same seed, same machine: the second run's metrics equal the first's, exactly.
    first, second = trial_metrics(uri, 0), trial_metrics(uri, 1)
    for fusion in ("add", "concat"):
        for metric, value in recorded[f"stage2.fusion={fusion}"].items():
            assert first[fusion][metric] == second[fusion][metric] == value.value, metric

    regressed = run_harness(["check", str(path), "--set", "stage1.train_steps=1",
                             "--no-progress"], cwd=tmp_path)
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    failing = [line for line in regressed.stdout.splitlines() if "REGRESSION" in line]
    assert any("stage1/psnr" in line for line in failing), regressed.stdout


def test_malformed_baseline_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, **GATED)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "harness-check-baseline/1", "experiments": [')
    result = run_harness(["check", str(path), "--baseline", str(broken)], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(broken) in result.stderr and "not valid JSON" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before anything ran
