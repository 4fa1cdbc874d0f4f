"""Stage 1 in the pipeline: one training per distinct config, cache, evaluation, validation."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness.cache import ArtifactCache
from harness.config import Stage1Config, load_experiment
from harness.data import load_dataset
from harness.errors import ConfigError
from harness.experiment.jobs import TrialSpec, stage1_job
from harness.keys import stage1_key
from harness.stages import stage1
from harness.stages.stage1 import load_stage1, reconstruct, train_stage1
from harness.sweep import expand, shared_stage1
from harness.tracking import STAGE_STAGE1, create_sweep_run, init_store
from harness.weights import WeightsStore, using
from tests.helpers import write_experiment

CHEAP = {"f": 2, "channels": 8, "latent_channels": 2, "K": 16, "train_steps": 8,
         "batch_size": 4, "perceptual_weight": 0.0, "eval_images": 8, "eval_metrics": ["l1"]}


@pytest.fixture
def counted_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every stage-1 training in this process, by kind."""
    calls: list[str] = []

    def counting(config: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(config.kind)
        return train_stage1(config, *args, **kwargs)

    monkeypatch.setattr(stage1, "train_stage1", counting)
    return calls


def test_two_trials_naming_one_stage1_config_train_it_once(
        tmp_path: Path, counted_training: list[str]) -> None:
    path = write_experiment(tmp_path, stage1=CHEAP, seeds=[0])
    trials = expand(load_experiment(path))
    assert len(trials) == 2 and len(shared_stage1(trials)) == 1  # add and concat arms
    dataset = load_dataset(tmp_path / "tiny_shapes.yaml")
    cache = ArtifactCache(tmp_path / "cache")
    built: list[bool] = []

    def trial(index: int) -> None:  # the two trials start at once, as two workers would
        built.append(load_stage1(trials[index].config.stage1, dataset, cache)[2])

    threads = [threading.Thread(target=trial, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted_training == ["ivq_vae"]
    assert sorted(built) == [False, True]
    other = trials[0].config.stage1.model_copy(update={"f": 4})
    load_stage1(other, dataset, cache)
    assert counted_training == ["ivq_vae", "ivq_vae"]  # a different stage-1 config trains


def test_evaluation_settings_do_not_retrain(tmp_path: Path, counted_training: list[str]) -> None:
    path = write_experiment(tmp_path, stage1=CHEAP, seeds=[0])
    config = expand(load_experiment(path))[0].config.stage1
    dataset = load_dataset(tmp_path / "tiny_shapes.yaml")
    cache = ArtifactCache(tmp_path / "cache")
    _, first, _ = load_stage1(config, dataset, cache)
    _, second, built = load_stage1(config.model_copy(update={"eval_images": 16,
                                                             "eval_metrics": ["l1", "psnr"]}),
                                   dataset, cache)
    assert not built and len(counted_training) == 1
    assert first["eval_images"] == 8 and second["eval_images"] == 16 and "psnr" in second


def test_corrupted_checkpoint_is_rebuilt_with_a_warning(
        tmp_path: Path, counted_training: list[str], caplog: pytest.LogCaptureFixture) -> None:
    path = write_experiment(tmp_path, stage1=CHEAP, seeds=[0])
    config = expand(load_experiment(path))[0].config.stage1
    dataset = load_dataset(tmp_path / "tiny_shapes.yaml")
    cache = ArtifactCache(tmp_path / "cache")
    load_stage1(config, dataset, cache)
    checkpoint = cache.path("stage1", stage1_key(config, dataset.content_hash)) / "model.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-8] + b"corrupt!")
    with caplog.at_level(logging.WARNING, logger="harness.cache"):
        _, _, built = load_stage1(config, dataset, cache)
    assert built and len(counted_training) == 2
    assert "model.pt does not match its sha256" in caplog.text


@pytest.mark.parametrize(("key", "value", "message"), [
    ("f", 3, "power of two"), ("K", 3, "power of two"), ("K", 0, "power of two"),
    ("kind", "vqgan", "unknown stage-1 model kind 'vqgan'"),
    ("attention_heads", 3, "must divide"),
])
def test_invalid_stage1_settings_name_the_key(tmp_path: Path, key: str, value: object,
                                              message: str) -> None:
    path = write_experiment(tmp_path, stage1=CHEAP | {key: value})
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(path))
    assert caught.value.key == f"stage1.{key}" and message in caught.value.message


def test_swept_invalid_k_names_the_key(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, stage1=CHEAP | {"K": {"sweep": [16, 24]}})
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(path))
    assert caught.value.key == "stage1.K"


def test_f_larger_than_the_image_names_stage1_f(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, stage1=CHEAP | {"f": 32})  # 16x16 images
    with pytest.raises(ConfigError) as caught:  # at expansion, so --dry-run catches it
        expand(load_experiment(path))
    assert caught.value.key == "stage1.f" and "largest f they allow is 16" in caught.value.message
    with pytest.raises(ConfigError) as caught:  # and again where the data is loaded
        load_stage1(Stage1Config(**CHEAP | {"f": 32}), load_dataset(
            tmp_path / "tiny_shapes.yaml"), ArtifactCache(tmp_path / "cache"))
    assert caught.value.key == "stage1.f" and "largest f they allow is 16" in caught.value.message


def test_unavailable_lpips_weights_disable_the_perceptual_term_with_a_reason(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    config = Stage1Config(**CHEAP | {"perceptual_weight": 1.0, "train_steps": 2})
    empty = WeightsStore(tmp_path / "weights", hub_dir=tmp_path / "hub")
    with using(empty), caplog.at_level(logging.WARNING, logger="harness.stages.stage1_losses"):
        result = train_stage1(config, images)
    assert result.perceptual_disabled and "LPIPS weights unavailable" in \
        result.perceptual_disabled
    assert "perceptual (LPIPS) loss disabled" in caplog.text
    assert "lpips" not in result.final_logs


def test_stage1_job_logs_its_evaluation(tmp_path: Path) -> None:
    """The stage-1 job run holds the seed-000 Table 1 columns and the codebook facts; a metric
    that cannot run here (LPIPS on 16x16 images; rFID without weights) says why."""
    stage1 = CHEAP | {"eval_metrics": ["l1", "lpips", "psnr", "ssim", "rfid"]}
    path = write_experiment(tmp_path, stage1=stage1, seeds=[0])
    trial = expand(load_experiment(path))[0]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = init_store(uri, "tiny")
    parent = create_sweep_run(uri, experiment_id, "s", {}, {})
    spec = TrialSpec(STAGE_STAGE1, "stage1-x", trial.config.model_dump(mode="json"),
                     trial.config_hash, trial.stage1_hash, {}, str(tmp_path / "tiny_shapes.yaml"),
                     str(tmp_path / "cache"), uri, experiment_id, parent, "s", 1.0)
    result = stage1_job(spec)
    assert result["status"] == "FINISHED", result
    run = MlflowClient(uri).get_run(result["run_id"])
    metrics, tags = run.data.metrics, run.data.tags
    for name in ("l1", "psnr", "ssim", "latent_h", "latent_w", "latent_c", "params",
                 "train_seconds", "train_images_per_second", "codebook_usage",
                 "codebook_perplexity"):
        assert f"stage1/{name}" in metrics, name
    assert metrics["stage1/latent_h"] == 8 and metrics["stage1/latent_c"] == 2
    assert run.data.tags["stage1/l1.num_images"] == "8"
    assert "stage1/lpips" not in metrics and tags["stage1/lpips.unavailable"]  # 16x16 images
    assert "stage1/rfid" in metrics or tags["stage1/rfid.unavailable"]
    assert tags["stage1/perceptual_loss.disabled"] == "perceptual_weight is 0"
    assert stage1_job(spec) == {"status": "FINISHED", "cache_hit": True}
    artifacts = [item.path for item in MlflowClient(uri).list_artifacts(run.info.run_id,
                                                                        "stage1")]
    assert artifacts == ["stage1/reconstructions.png"]


def test_identity_stage1_is_exact_on_uint8_images_and_trains_nothing() -> None:
    config = Stage1Config(kind="identity", f=1, train_steps=3)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    result = train_stage1(config, images)
    assert result.model.parameter_count() == 0 and result.seconds == 0 and not result.trained
    np.testing.assert_array_equal(reconstruct(result.model, images, 2), images)


def test_stage1_training_reduces_the_loss_and_is_seeded() -> None:
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    images[:, :8] = 200  # some structure to learn
    config = Stage1Config(f=2, channels=8, latent_channels=4, train_steps=40, batch_size=8,
                          lr=3e-3, adversarial_start=30, perceptual_weight=0)
    first = train_stage1(config, images)
    assert np.mean(first.history[-5:]) < 0.7 * np.mean(first.history[:5])
    assert "d_loss" in first.final_logs and "perplexity" in first.final_logs
    second = train_stage1(config, images)
    assert first.history == second.history
    assert reconstruct(first.model, images, 5).shape == images.shape


def _stage1_spec(tmp_path: Path, manifest: Path) -> TrialSpec:
    path = write_experiment(tmp_path, stage1=CHEAP, seeds=[0])
    trial = expand(load_experiment(path))[0]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = init_store(uri, "tiny")
    parent = create_sweep_run(uri, experiment_id, "s", {}, {})
    return TrialSpec(STAGE_STAGE1, "stage1-x", trial.config.model_dump(mode="json"),
                     trial.config_hash, trial.stage1_hash, {}, str(manifest),
                     str(tmp_path / "cache"), uri, experiment_id, parent, "s", 1.0)


def test_a_dataset_that_cannot_be_read_fails_the_stage1_run_with_its_reason(tmp_path: Path
                                                                            ) -> None:
    """Before, a missing image folder escaped the job as a Ray traceback and no run said why."""
    manifest = tmp_path / "folder.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "folder", "source": "image_folder", "resolution": 16,
        "splits": {"train": 8, "eval": 4}, "path": str(tmp_path / "no_such_folder")}))
    spec = _stage1_spec(tmp_path, manifest)
    result = stage1_job(spec)
    assert result["status"] == "FAILED" and "no_such_folder" in result["error"], result
    run = MlflowClient(spec.tracking_uri).get_run(result["run_id"])
    assert run.info.status == "FAILED" and "no_such_folder" in run.data.tags["error"]
    artifacts = MlflowClient(spec.tracking_uri).list_artifacts(run.info.run_id)
    assert [item.path for item in artifacts] == ["traceback.txt"]


def test_a_dead_worker_leaves_its_run_failed_with_the_reason(tmp_path: Path) -> None:
    from harness.experiment.scheduling import worker_died

    spec = _stage1_spec(tmp_path, tmp_path / "tiny_shapes.yaml")
    run = spec.open_run({})  # the worker opened it, then died (SIGKILL: no __exit__)
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nray.exceptions.ActorDiedError: killed by signal 9\n")
    reason = worker_died(spec.to_dict(), str(error_file))
    assert reason == "worker died: ray.exceptions.ActorDiedError: killed by signal 9"
    stored = MlflowClient(spec.tracking_uri).get_run(run.run_id)
    assert stored.info.status == "FAILED" and stored.data.tags["error"] == reason
