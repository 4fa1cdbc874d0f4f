from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_experiment
from harness.errors import ConfigError
from harness.sweep import expand, shared_stage1, trial_table
from tests.helpers import REPO, run_harness, write_experiment


def test_grid_times_seeds(tiny_experiment: Path) -> None:
    trials = expand(load_experiment(tiny_experiment))
    assert [(t.config.stage2.fusion, t.config.seed) for t in trials] == [
        ("add", 0), ("add", 1), ("concat", 0), ("concat", 1)]
    assert len({t.config_hash for t in trials}) == 4
    assert len(shared_stage1(trials)) == 1  # stage 1 does not depend on fusion or seed


def test_grid_over_stage1_makes_distinct_stage1_jobs(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, stage1={"f": {"sweep": [1, 2, 4]}}, seeds=[0])
    trials = expand(load_experiment(path, overrides=["stage2.fusion={sweep: [add, concat]}"]))
    assert len(trials) == 6
    groups = shared_stage1(trials)
    assert len(groups) == 3 and all(len(members) == 2 for members in groups.values())


def test_random_leaves_are_drawn_num_samples_times_reproducibly(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, seeds=[0], num_samples=5,
                            stage2={"lr": {"loguniform": [1e-5, 1e-2]},
                                    "fusion": {"choice": ["add", "adaptive"]},
                                    "ema": {"uniform": [0.9, 0.99]}})
    first = expand(load_experiment(path))
    second = expand(load_experiment(path))
    assert len(first) == 5
    assert [t.config_hash for t in first] == [t.config_hash for t in second]
    lrs = [t.config.stage2.lr for t in first]
    assert all(1e-5 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 5
    assert all(0.9 <= t.config.stage2.ema <= 0.99 for t in first)
    reseeded = expand(load_experiment(path, overrides=["sweep_seed=1"]))
    assert [t.config_hash for t in reseeded] != [t.config_hash for t in first]


def test_config_hash_ignores_where_the_file_lives(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = expand(load_experiment(write_experiment(tmp_path / "a")))
    two = expand(load_experiment(write_experiment(tmp_path / "b")))
    assert [t.config_hash for t in one] == [t.config_hash for t in two]


def test_trial_table_lists_swept_values(tiny_experiment: Path) -> None:
    table = trial_table(expand(load_experiment(tiny_experiment)))
    lines = table.splitlines()
    assert lines[0].split() == ["trial", "config", "hash", "stage-1", "job", "stage2.fusion",
                                "seed"]
    assert len(lines) == 2 + 4


def test_dry_run_of_the_fusion_ablation_prints_one_row_per_arm_and_seed(tmp_path: Path) -> None:
    result = run_harness(["run", str(REPO / "experiments/ablation_fusion.yaml"), "--dry-run"],
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()
            if line.startswith("ablation_fusion-")]
    pairs = sorted((row[3], row[4]) for row in rows)
    assert pairs == sorted((fusion, seed) for fusion in ("add", "concat", "adaptive")
                           for seed in ("0", "1"))
    assert "shared by 6 trials" in result.stdout
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(("changes", "key", "message"), [
    ({"eval": {"metrics": [], "num_images": 999}}, "eval.num_images", "eval split"),
    ({"sample": {"ddim_steps": 600}}, "sample", "ddim_steps=600 exceeds stage2.T=500"),
])
def test_sizes_the_data_or_the_process_cannot_meet_are_refused_at_expansion(
        tmp_path: Path, changes: dict, key: str, message: str) -> None:
    path = write_experiment(tmp_path, **changes)
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(path))
    assert caught.value.key == key and message in caught.value.message


def test_run_names_say_the_arm_and_are_unique(tmp_path: Path) -> None:
    from harness.sweep import run_names, stage1_run_names

    path = write_experiment(tmp_path)  # fusion {add, concat} x seeds {0, 1}
    trials = expand(load_experiment(path))
    names = run_names(trials)
    assert sorted(names.values()) == ["fusion=add seed=0", "fusion=add seed=1",
                                      "fusion=concat seed=0", "fusion=concat seed=1"]
    assert list(stage1_run_names(shared_stage1(trials)).values()) == ["stage1 conv_ae f=2"]
    whole = write_experiment(tmp_path, "whole.yaml", seeds=[0], stage1={"sweep": [
        {"kind": "conv_ae", "f": 2, "channels": 8, "train_steps": 5},
        {"kind": "conv_ae", "f": 4, "channels": 8, "train_steps": 5}]})
    named = run_names(expand(load_experiment(whole)))
    assert len(set(named.values())) == 4  # two sections x two fusions, hashed sections
    assert all(name.startswith("stage1=#") for name in named.values())
