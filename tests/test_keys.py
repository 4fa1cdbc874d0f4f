"""Cache keys: everything that changes an artifact, nothing that does not."""

from __future__ import annotations

from harness.config import Stage1Config, TrialConfig
from harness.keys import config_hash, stage1_eval_key, stage1_key, stage2_key


def trial(**stage2: object) -> TrialConfig:
    return TrialConfig(name="t", dataset="d.yaml", stage2=stage2)


def test_config_hash_is_canonical() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_stage1_key_leaves_out_its_evaluation_and_the_eval_key_holds_it() -> None:
    base = Stage1Config(perceptual_weight=0.0)
    evaluated = base.model_copy(update={"eval_images": 8, "eval_metrics": ["l1"]})
    assert stage1_key(base, "data") == stage1_key(evaluated, "data")
    assert stage1_eval_key(base, "data") != stage1_eval_key(evaluated, "data")
    assert stage1_key(base, "data") != stage1_key(base, "other data")
    assert stage1_key(base, "data") != stage1_key(base.model_copy(update={"f": 8}), "data")


def test_stage2_key_leaves_out_how_training_is_watched() -> None:
    assert stage2_key(trial(), "s1") == stage2_key(trial(eval_every=100, eval_num_samples=16),
                                                   "s1")
    assert stage2_key(trial(), "s1") != stage2_key(trial(lr=2e-4), "s1")
    assert stage2_key(trial(), "s1") != stage2_key(trial(), "another stage 1")
    assert stage2_key(trial(), "s1") != stage2_key(
        TrialConfig(name="t", dataset="d.yaml", seed=1), "s1")
    sampling = TrialConfig(name="t", dataset="d.yaml", sample={"ddim_steps": 10})
    assert stage2_key(trial(), "s1") == stage2_key(sampling, "s1")  # sampling trains nothing


def test_a_conditional_stage2_key_holds_its_training_labels() -> None:
    conditional = trial(conditioning="class")
    assert stage2_key(conditional, "s1", labels_hash="a") != stage2_key(conditional, "s1",
                                                                         labels_hash="b")
    assert stage2_key(conditional, "s1", labels_hash="a") != stage2_key(trial(), "s1")
    assert stage2_key(trial(), "s1", labels_hash="a") == stage2_key(trial(), "s1")
    guided = TrialConfig(name="t", dataset="d.yaml", stage2={"conditioning": "class"},
                         sample={"guidance_scale": 3.0})
    assert stage2_key(guided, "s1", labels_hash="a") == stage2_key(conditional, "s1",
                                                                    labels_hash="a")
