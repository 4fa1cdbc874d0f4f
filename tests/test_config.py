from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config import apply_override, deep_merge, load_experiment
from harness.errors import ConfigError
from tests.helpers import run_harness, write_experiment


def test_loads_and_resolves_dataset_next_to_the_experiment(tiny_experiment: Path) -> None:
    experiment = load_experiment(tiny_experiment)
    assert experiment.spec.name == "tiny"
    assert experiment.dataset_path == (tiny_experiment.parent / "tiny_shapes.yaml").resolve()


def test_profile_deep_merges_and_set_overrides_after_it(tiny_experiment: Path) -> None:
    experiment = load_experiment(tiny_experiment, ["quick"], ["stage1.f=4"])
    assert experiment.raw["stage1"]["train_steps"] == 5
    assert experiment.raw["stage1"]["f"] == 4
    assert experiment.raw["stage1"]["channels"] == 8  # untouched keys survive the merge


def test_set_parses_yaml_values() -> None:
    raw = apply_override({"stage2": {"fusion": "add"}}, "stage2.fusion={sweep: [add, concat]}")
    assert raw["stage2"]["fusion"] == {"sweep": ["add", "concat"]}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"stage1": {"f": 2, "fancy": 1}}, "stage1.fancy", "unknown key"),
    ({"stage1": {"f": "big"}}, "stage1.f", "integer"),
    ({"stage1": {"f": 3}}, "stage1.f", "power of two"),
    ({"stage1": {"K": 1000}}, "stage1.K", "power of two"),
    ({"stage1": {"f": {"sweep": [2, 32]}}}, "stage1.f", "larger than the 16x16 images"),
    ({"stage2": {"fusion": {"sweep": "add"}}}, "stage2.fusion.sweep", "non-empty list"),
    ({"stage2": {"lr": {"uniform": [1, 0.1]}}}, "stage2.lr.uniform", "lo < hi"),
    ({"stage2": {"fusion": {"sweep": ["add", "sum"]}}}, "stage2.fusion", "'sum'"),
    ({"seeds": "zero"}, "seeds", "list"),
    ({"dataset": "missing.yaml"}, "dataset", "not found"),
    ({"bogus_section": {}}, "bogus_section", "unknown key"),
    ({"stage1": {"kind": "pretrained"}}, "stage1.path", "needs the folder"),
    ({"stage1": {"kind": "pretrained", "path": "no/such/folder"}}, "stage1.path", "no folder"),
    ({"stage1": {"kind": "conv_ae", "path": "."}}, "stage1.path", "only kind pretrained"),
    ({"stage2": {"kind": "dit", "channels": 10, "heads": 4}}, "stage2.heads", "must divide"),
    ({"stage2": {"kind": "pkg.module:Class:x"}}, "stage2.kind", "package.module:ClassName"),
])
def test_bad_input_names_file_and_key(tmp_path: Path, changes: dict, key: str,
                                      words: str) -> None:
    from harness.sweep import expand

    path = write_experiment(tmp_path, **changes)
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(path))
    assert caught.value.key == key
    assert caught.value.file == str(path)
    assert words in caught.value.message


def test_unknown_profile_lists_the_available_ones(tiny_experiment: Path) -> None:
    with pytest.raises(ConfigError, match="available: quick"):
        load_experiment(tiny_experiment, ["full"])


@pytest.mark.parametrize(("changes", "args", "key"), [
    ({"stage1": {"f": 2, "fancy": 1}}, [], "stage1.fancy"),
    ({"stage1": {"f": "big"}}, [], "stage1.f"),
    ({"stage2": {"fusion": {"sweep": []}}}, [], "stage2.fusion.sweep"),
    ({"dataset": "nowhere/manifest.yaml"}, [], "dataset"),
    ({}, ["--set", "stage1.lr=-1"], "stage1.lr"),
])
def test_cli_rejects_bad_input_with_exit_2_and_creates_no_runs(
        tmp_path: Path, changes: dict, args: list[str], key: str) -> None:
    path = write_experiment(tmp_path, **changes)
    result = run_harness(["run", str(path), *args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{path}: {key}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / ".harness").exists()


def test_cli_reports_unreadable_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    result = run_harness(["run", str(path), "--dry-run"], cwd=tmp_path)
    assert result.returncode == 2
    assert str(path) in result.stderr and "not valid YAML" in result.stderr


def test_every_shipped_experiment_validates() -> None:
    from harness.sweep import expand

    repo = Path(__file__).resolve().parent.parent
    for path in sorted((repo / "experiments").rglob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert expand(load_experiment(path)), path
        for profile in raw.get("profiles", {}):
            experiment = load_experiment(path, [profile])
            assert experiment.spec.name == raw["name"]


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level, name in enumerate("bcdefgh"):
        previous = "abcdefgh"[level]
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")  # 10^8 values once expanded
    with pytest.raises(ConfigError, match="expands to more than"):
        load_experiment(path)


def test_keys_added_later_are_left_out_of_dumps_while_unset() -> None:
    """stage1.path and stage2.depth, unset, leave older configs' hashes and cache keys alone."""
    from harness.config import Stage1Config, Stage2Config

    assert "path" not in Stage1Config().model_dump(mode="json")
    assert "depth" not in Stage2Config().model_dump(mode="json")
    assert Stage2Config(kind="dit", depth=2).model_dump(mode="json")["depth"] == 2
    assert Stage2Config.model_validate(Stage2Config().model_dump(mode="json")) == Stage2Config()


def test_conditioning_keys_are_left_out_of_dumps_while_at_their_defaults() -> None:
    """An unconditional model's config dumps, hashes and cache keys as before issue 18."""
    from harness.config import SampleConfig, Stage2Config

    before = {"kind", "fusion", "channels", "channel_mult", "heads", "attention_resolution",
              "dropout", "T", "beta_schedule", "process", "prediction", "loss_weighting",
              "min_snr_gamma", "train_steps", "batch_size", "lr", "weight_decay", "ema",
              "eval_every", "eval_num_samples", "log_every", "checkpoint_every"}
    assert set(Stage2Config().model_dump(mode="json")) == before
    assert "guidance_scale" not in SampleConfig().model_dump(mode="json")
    conditional = Stage2Config(conditioning="cross_attention", p_uncond=0.2,
                               condition_tokens=2, scale_shift=True)
    dumped = conditional.model_dump(mode="json")
    assert dumped["conditioning"] == "cross_attention" and dumped["scale_shift"] is True
    assert Stage2Config.model_validate(dumped) == conditional
    assert conditional.label_dropout == 0.2
    assert Stage2Config(conditioning="class").label_dropout == 0.1
    assert Stage2Config().label_dropout == 0.0


@pytest.mark.parametrize(("section", "values", "message"), [
    ("stage2", {"p_uncond": 0.1}, "applies to a conditional model"),
    ("stage2", {"conditioning": "class", "condition_tokens": 4}, "cross_attention only"),
    ("stage2", {"conditioning": "class", "p_uncond": 1.5}, "less than or equal to 1"),
    ("sample", {"guidance_scale": 2.0}, "guidance_scale needs a conditional model"),
    ("sample", {"guidance_scale": -1.0}, "greater than or equal to 0"),
])
def test_conditioning_settings_that_cannot_apply_are_errors(section: str, values: dict,
                                                            message: str) -> None:
    from pydantic import ValidationError

    from harness.config import TrialConfig

    with pytest.raises(ValidationError, match=message):
        TrialConfig(name="t", dataset="d.yaml", **{section: values})
