"""One trial end to end, in-process on a real store: stage 2, samples, their set metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from harness.cache import ArtifactCache
from harness.config import load_experiment
from harness.data import load_dataset
from harness.errors import ConfigError
from harness.experiment.jobs import TrialSpec, execute
from harness.experiment.trial import run_trial
from harness.runtime import Runtime
from harness.sweep import Trial, check_metric_names, expand
from harness.tracking import (
    STAGE_STAGE1,
    STAGE_TRIAL,
    TrackedRun,
    create_sweep_run,
    init_store,
)
from harness.weights import WeightsStore
from tests.helpers import TINY_EXPERIMENT, run_harness, write_experiment


def run_in_process(path: Path, tmp_path: Path) -> tuple[str, list[dict]]:
    """The stage-1 job then every trial of the experiment, called as a worker would."""
    experiment = load_experiment(path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = init_store(uri, experiment.spec.name)
    parent = create_sweep_run(uri, experiment_id, "sweep", {}, {})
    trials = expand(experiment)

    def spec(trial: Trial, kind: str) -> dict:
        return TrialSpec(kind, f"{kind}-{trial.trial_id}", trial.config.model_dump(mode="json"),
                         trial.config_hash, trial.stage1_hash, trial.swept,
                         str(experiment.dataset_path), str(tmp_path / "cache"), uri,
                         experiment_id, parent, "sweep", 1.0).to_dict()

    assert execute(spec(trials[0], STAGE_STAGE1))["status"] == "FINISHED"
    return uri, [execute(spec(trial, STAGE_TRIAL)) for trial in trials]


@pytest.mark.slow
def test_trials_share_stage2_sample_and_log_set_metrics(tmp_path: Path,
                                                        weights: WeightsStore) -> None:
    # Two DDIM step counts on one stage-2 config: the second trial trains nothing.
    path = write_experiment(
        tmp_path, seeds=[0],
        stage2=TINY_EXPERIMENT["stage2"] | {"fusion": "adaptive", "train_steps": 6,
                                            "eval_every": 3, "eval_num_samples": 8},
        sample=TINY_EXPERIMENT["sample"] | {"ddim_steps": {"sweep": [2, 4]}},
        eval={"metrics": ["kid", "is"], "num_images": 16})
    uri, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED", "FINISHED"], results
    first, second = (MlflowClient(uri).get_run(result["run_id"]) for result in results)
    assert first.data.metrics["stage2/cache_hit"] == 0 and second.data.metrics[
        "stage2/cache_hit"] == 1
    assert first.data.metrics["stage2/params"] == second.data.metrics["stage2/params"] > 0
    for run in (first, second):
        assert run.data.metrics["sample/num_images"] == 8
        assert run.data.metrics["kid"] > 0  # 8 decoded samples of a 6-step model vs real data
        assert run.data.tags["kid.num_images"] == "8"
        assert run.data.tags["kid.num_reference"] == "16"
        assert not [key for key in run.data.params  # the params are the configuration
                    if key.startswith(("kid.", "is.", "stage1/"))]
        [data] = run.inputs.dataset_inputs  # the UI's Dataset column
        assert data.dataset.name == "tiny_shapes" and data.dataset.digest == run.data.tags[
            "dataset_hash"][:16]
        assert "is" not in run.data.metrics  # the registry weights have no logits layer
        assert "logits" in run.data.tags["is.unavailable"]
        artifacts = {item.path for item in MlflowClient(uri).list_artifacts(run.info.run_id,
                                                                             "images")}
        assert "images/samples.png" in artifacts
    # The trial that trained stage 2 holds KID during training as a history with its steps.
    history = MlflowClient(uri).get_metric_history(first.info.run_id, "train_eval/kid")
    assert [point.step for point in history] == [3, 6]
    assert not MlflowClient(uri).get_metric_history(second.info.run_id, "train_eval/kid")


def test_unknown_metric_names_name_the_file_and_key_at_expansion(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, eval={"metrics": ["fid", "psnr"], "num_images": 16})
    with pytest.raises(ConfigError, match=r"tiny\.yaml: eval\.metrics: unknown set metric"):
        expand(load_experiment(path))
    path = write_experiment(tmp_path, stage1=TINY_EXPERIMENT["stage1"] | {
        "eval_metrics": ["l1", "lpipz"]})
    with pytest.raises(ConfigError, match=r"stage1\.eval_metrics: unknown metric\(s\) lpipz"):
        expand(load_experiment(path))
    [trial, *_] = expand(load_experiment(write_experiment(tmp_path)))
    check_metric_names(trial.config, path)  # the names of a valid trial pass


def test_harness_run_rejects_an_unknown_metric_before_any_run(tmp_path: Path) -> None:
    path = write_experiment(tmp_path)
    for dry_run in ([], ["--dry-run"]):
        result = run_harness(["run", str(path), "--set", "eval.metrics=[kid, fidd]", *dry_run],
                             cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "eval.metrics: unknown set metric(s) fidd" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_trial_runs_every_stage_on_the_device_it_is_given(tmp_path: Path) -> None:
    """The models trained on the CPU first (into the cache); the same trial given torch's
    `meta` device loads both models onto it, evaluates, encodes, samples and decodes there,
    and stops only at its first copy to the host, the decoded samples' uint8: no stage fell
    back to the CPU (a CPU tensor mixed into a meta computation raises)."""
    path = write_experiment(tmp_path, seeds=[0], stage2=TINY_EXPERIMENT["stage2"] | {
        "fusion": "add"})
    uri, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED"]
    [trial] = expand(load_experiment(path))
    run = TrackedRun(uri, init_store(uri, "tiny"), results[0]["run_id"], "on meta", {}, {})
    dataset = load_dataset(tmp_path / "tiny_shapes.yaml", tmp_path / "cache")
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor") as info:
        run_trial(trial.config, dataset, ArtifactCache(tmp_path / "cache"), run,
                  Runtime(torch.device("meta")))
    ours = [entry.name for entry in info.traceback if "/harness/" in str(entry.path)]
    assert ours[-3:] == ["sample_and_evaluate", "generate", "to_uint8"], ours


TINY_PATCHES = {"name": "tiny_patches", "source": "skimage_patches", "resolution": 16,
                "splits": {"train": 64, "eval": 48}, "seed": 0,
                "options": {"images": ["astronaut", "coffee"], "grid": 3}}


@pytest.mark.slow
def test_guidance_scales_share_one_conditional_model_and_log_nfe_and_per_class_kid(
        tmp_path: Path, weights: WeightsStore) -> None:
    (tmp_path / "tiny_patches.yaml").write_text(yaml.safe_dump(TINY_PATCHES))
    path = write_experiment(
        tmp_path, dataset="tiny_patches.yaml", seeds=[0],
        stage2=TINY_EXPERIMENT["stage2"] | {"fusion": "add", "conditioning": "class",
                                            "scale_shift": True, "train_steps": 4},
        sample=TINY_EXPERIMENT["sample"] | {"num_samples": 16,
                                            "guidance_scale": {"sweep": [1.0, 2.0]}},
        eval={"metrics": ["kid", "kid_per_class"], "num_images": 48})
    uri, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED", "FINISHED"], results
    plain, guided = (MlflowClient(uri).get_run(result["run_id"]).data for result in results)
    assert guided.metrics["stage2/cache_hit"] == 1  # the scale is a sampling setting
    assert (plain.metrics["sample/nfe"], guided.metrics["sample/nfe"]) == (3, 6)
    assert (plain.metrics["sample/guidance_scale"], guided.metrics["sample/guidance_scale"]
            ) == (1, 2)
    for run in (plain, guided):
        classes = [run.metrics[f"kid_per_class/{name}"] for name in ("astronaut", "coffee")]
        assert run.metrics["kid_per_class"] == pytest.approx(sum(classes) / 2)
        assert run.tags["kid_per_class/astronaut.num_images"] == "8"


def test_a_conditional_model_on_unlabeled_data_fails_its_trial_saying_why(
        tmp_path: Path) -> None:
    path = write_experiment(tmp_path, seeds=[0],
                            stage2=TINY_EXPERIMENT["stage2"] | {"fusion": "add",
                                                                "conditioning": "class"})
    _, results = run_in_process(path, tmp_path)
    assert {result["status"] for result in results} == {"FAILED"}
    assert "stage2.conditioning" in results[0]["error"]
    assert "has none" in results[0]["error"]
