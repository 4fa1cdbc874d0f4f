"""Reference rows: real data at the floor, an untrained denoiser far above it, each row cached
and recorded as its own run of the sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.config import load_experiment
from harness.data import load_dataset
from harness.errors import ConfigError
from harness.experiment.jobs import TrialSpec, execute
from harness.stages.references import REFERENCE_ROW_KIND, real_comparison_set, reference_set
from harness.sweep import expand
from harness.tracking import (
    STAGE_REFERENCE,
    STAGE_STAGE1,
    child_runs,
    create_sweep_run,
    init_store,
)
from harness.weights import WeightsStore
from tests.helpers import TINY_EXPERIMENT, write_experiment


def test_the_reference_set_and_the_real_rows_images_come_from_the_named_splits(
        tmp_path: Path) -> None:
    path = write_experiment(tmp_path, eval={"metrics": ["kid"], "num_images": 16})
    [trial, *_] = expand(load_experiment(path))
    dataset = load_dataset(load_experiment(path).dataset_path)
    images, key = reference_set(trial.config, dataset)
    real, split = real_comparison_set(trial.config, dataset)
    assert key.split == "eval" and (images == dataset.eval[:16]).all()
    assert split == "train" and (real == dataset.train[:8]).all()
    train_protocol = trial.config.model_copy(update={"eval": trial.config.eval.model_copy(
        update={"reference": "train"})})
    images, key = reference_set(train_protocol, dataset)
    assert key.split == "train" and (images == dataset.train[:16]).all()
    assert real_comparison_set(train_protocol, dataset)[1] == "eval"


def test_a_reference_set_larger_than_its_split_names_the_key(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, eval={"metrics": ["kid"], "num_images": 16,
                                            "reference": "train"},
                            sample=TINY_EXPERIMENT["sample"] | {"num_samples": 40})
    with pytest.raises(ConfigError, match=r"sample\.num_samples.*eval split"):
        expand(load_experiment(path))


@pytest.mark.slow
def test_real_data_scores_at_the_floor_far_below_an_untrained_denoiser(
        tmp_path: Path, weights: WeightsStore) -> None:
    path = write_experiment(tmp_path, seeds=[0], eval={"metrics": ["fid", "kid"],
                                                       "num_images": 32},
                            stage2=TINY_EXPERIMENT["stage2"] | {"fusion": "add"},
                            sample=TINY_EXPERIMENT["sample"] | {"num_samples": 32})
    experiment = load_experiment(path)
    [trial] = expand(experiment)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = init_store(uri, experiment.spec.name)
    parent = create_sweep_run(uri, experiment_id, "sweep", {}, {})

    def spec(kind: str, real_data_row: bool = False) -> dict:
        return TrialSpec(kind, f"{kind}-{trial.trial_id}", trial.config.model_dump(mode="json"),
                         trial.config_hash, trial.stage1_hash, {},
                         str(experiment.dataset_path), str(tmp_path / "cache"), uri,
                         experiment_id, parent, "sweep", 1.0, "stage1 conv_ae f=2",
                         real_data_row).to_dict()

    assert execute(spec(STAGE_STAGE1))["status"] == "FINISHED"
    result = execute(spec(STAGE_REFERENCE, real_data_row=True))
    assert result["status"] == "FINISHED", result
    values = result["metrics"]
    # The train split as "samples" sits at the floor; noise through the decoder does not.
    assert values["real_data/fid"] < values["untrained/fid"] / 2
    assert values["real_data/kid"] < values["untrained/kid"]
    # (a 20-step autoencoder: its reconstructions are far from the floor, not below it)
    assert values["stage1_recon/fid"] > values["real_data/fid"]
    runs = {run.data.tags["reference_row"]: run for run in child_runs(
        uri, experiment_id, "sweep", STAGE_REFERENCE)}
    assert set(runs) == {"real_data", "stage1_recon", "untrained"}
    assert runs["untrained"].info.run_name == "untrained denoiser (stage1 conv_ae f=2)"
    assert runs["real_data"].data.metrics["fid"] == values["real_data/fid"]
    assert runs["real_data"].data.tags["fid.num_images"] == "32"
    # Measured once: a second job reads every row from the cache.
    folder = tmp_path / "cache" / REFERENCE_ROW_KIND
    entries = sorted(folder.iterdir())
    again = execute(spec(STAGE_REFERENCE))
    assert sorted(folder.iterdir()) == entries
    assert again["metrics"]["untrained/fid"] == values["untrained/fid"]
    assert "real_data/fid" not in again["metrics"]
    # the sweep run, the stage-1 run, three rows, then the two rows of the second job
    assert len(MlflowClient(uri).search_runs([experiment_id])) == 1 + 1 + 3 + 2
