"""Sweep expansion: an experiment with sweep-spec leaves -> a list of resolved trials.

Semantics follow Ray Tune's search spaces: `{sweep: [...]}` leaves form a grid (cartesian
product), and the whole grid is repeated `num_samples` times with fresh draws of the
`{choice: [...]}`, `{uniform: [lo, hi]}` and `{loguniform: [lo, hi]}` leaves. Every grid
point then runs once per seed. Draws come from `sweep_seed`, so expanding the same file
twice gives the same trials and the same config hashes (which `--resume` matches on).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config import SWEEP_KEYS, Experiment, TrialConfig, validation_error
from harness.console import format_table
from harness.data import load_manifest
from harness.errors import ConfigError
from harness.keys import config_hash

SECTIONS = ("stage1", "stage2", "sample", "eval", "gddcm")
OPTIONAL_SECTIONS = ("gddcm",)  # absent (None) unless the file has them


@dataclass(frozen=True)
class SweepLeaf:
    key: str  # dotted path, e.g. "stage2.fusion"
    kind: str  # one of SWEEP_KEYS
    values: list[Any]


@dataclass(frozen=True)
class Trial:
    index: int
    config: TrialConfig
    swept: dict[str, Any] = field(default_factory=dict)  # key path -> value of this trial

    @property
    def config_hash(self) -> str:
        data = self.config.model_dump(mode="json")
        for section in OPTIONAL_SECTIONS:  # an absent one leaves older configs' hashes as they were
            if data.get(section) is None:
                data.pop(section, None)
        return config_hash(data)

    @property
    def stage1_hash(self) -> str:
        """Identity of the stage-1 job this trial needs: its config and the dataset."""
        return config_hash({"dataset": self.config.dataset,
                            "stage1": self.config.stage1.model_dump(mode="json")})

    @property
    def trial_id(self) -> str:
        return f"{self.config.name}-{self.index:03d}-{self.config_hash[:8]}"


SHORT_VALUE = 24  # longer values (and whole-section sweeps) are named by a hash


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if isinstance(value, dict | list) or len(text) > SHORT_VALUE:
        return "#" + config_hash({"value": value})[:6]
    return text


def run_names(trials: list[Trial]) -> dict[str, str]:
    """Trial id -> a run name that says the arm: the swept values, `fusion=add seed=0`.

    A key is its last path segment unless two swept keys share it; long values and whole
    sections are a short hash of the value; a name used twice gets its trial index.
    """
    keys = list(dict.fromkeys(key for trial in trials for key in trial.swept))
    last = [key.rsplit(".", 1)[-1] for key in keys]
    label = {key: short if last.count(short) == 1 else key for key, short in zip(keys, last,
                                                                              strict=True)}
    names = {trial.trial_id: " ".join(f"{label[key]}={_short(value)}"
                                      for key, value in trial.swept.items())
             or trial.config.name for trial in trials}
    return _unique(names, {trial.trial_id: f"#{trial.index}" for trial in trials})


def stage1_run_names(groups: dict[str, list[Trial]]) -> dict[str, str]:
    """Stage-1 hash -> what the job builds, `stage1 conv_ae f=4`, with K for a VQ model and
    the hash where two jobs would read the same."""
    names = {}
    for key, members in groups.items():
        stage1 = members[0].config.stage1
        names[key] = f"stage1 {stage1.kind} f={stage1.f}" + (
            f" K={stage1.K}" if stage1.kind == "ivq_vae" else "")
    return _unique(names, {key: f"#{key[:6]}" for key in names})


def _unique(names: dict[str, str], suffixes: dict[str, str]) -> dict[str, str]:
    """Each name used more than once gets its suffix."""
    counts = Counter(names.values())
    return {key: f"{name} {suffixes[key]}" if counts[name] > 1 else name
            for key, name in names.items()}


def find_leaves(experiment: Experiment) -> list[SweepLeaf]:
    """Every sweep-spec leaf in the config sections, checked for shape."""
    leaves: list[SweepLeaf] = []

    def visit(node: Any, key: str) -> None:
        if not isinstance(node, dict):
            return
        spec_keys = [k for k in node if k in SWEEP_KEYS]
        if not spec_keys:
            for child_key, child in node.items():
                visit(child, f"{key}.{child_key}")
            return
        if len(node) != 1:
            raise ConfigError(experiment.path, key,
                              f"a sweep spec has exactly one key out of {', '.join(SWEEP_KEYS)}, "
                              f"got {sorted(node)}")
        kind = spec_keys[0]
        leaves.append(SweepLeaf(key, kind, _check_spec(experiment, f"{key}.{kind}", kind,
                                                        node[kind])))

    for section in SECTIONS:
        visit(experiment.raw.get(section), section)
    return leaves


def _check_spec(experiment: Experiment, key: str, kind: str, values: Any) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ConfigError(experiment.path, key, f"expected a non-empty list, got {values!r}")
    if kind in ("sweep", "choice"):
        return values
    if len(values) != 2 or not all(isinstance(v, int | float) for v in values):
        raise ConfigError(experiment.path, key, f"expected [lo, hi] numbers, got {values!r}")
    low, high = values
    if not low < high:
        raise ConfigError(experiment.path, key, f"expected lo < hi, got {values!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(experiment.path, key, f"loguniform needs lo > 0, got {values!r}")
    return values


def _draw(leaf: SweepLeaf, rng: random.Random) -> Any:
    if leaf.kind == "choice":
        return rng.choice(leaf.values)
    low, high = leaf.values
    if leaf.kind == "uniform":
        return rng.uniform(low, high)
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree[part]
    tree[last] = value


def expand(experiment: Experiment) -> list[Trial]:
    """All trials of an experiment, in a stable order, each validated."""
    spec = experiment.spec
    leaves = find_leaves(experiment)
    grid = [leaf for leaf in leaves if leaf.kind == "sweep"]
    random_leaves = [leaf for leaf in leaves if leaf.kind != "sweep"]
    rng = random.Random(spec.sweep_seed)
    manifest = load_manifest(experiment.dataset_path)
    trials: list[Trial] = []
    for _ in range(spec.num_samples if random_leaves else 1):
        for point in itertools.product(*(leaf.values for leaf in grid)):
            swept = {leaf.key: value for leaf, value in zip(grid, point, strict=True)}
            swept |= {leaf.key: _draw(leaf, rng) for leaf in random_leaves}
            for seed in spec.seeds:
                trial = _make_trial(experiment, len(trials), swept, seed,
                                    seeded=len(spec.seeds) > 1)
                trial.config.stage1.check_resolution(manifest.resolution, experiment.path)
                check_sizes(trial.config, manifest.splits.model_dump(), experiment.path)
                check_metric_names(trial.config, experiment.path)
                check_gddcm(trial.config, manifest.resolution, experiment.path)
                trials.append(trial)
    return trials


def _make_trial(experiment: Experiment, index: int, swept: dict[str, Any], seed: int,
                seeded: bool) -> Trial:
    tree = {section: json.loads(json.dumps(experiment.raw.get(section) or {}))
            for section in SECTIONS
            if section not in OPTIONAL_SECTIONS or experiment.raw.get(section) is not None}
    for key, value in swept.items():
        _set(tree, key, value)
    try:
        config = TrialConfig(name=experiment.spec.name, dataset=experiment.spec.dataset,
                             seed=seed, **tree)
    except ValidationError as error:
        failure = validation_error(experiment.path, error, experiment.overrides)
        if failure.key in swept:
            failure = ConfigError(experiment.path, failure.key,
                                  f"{failure.message} (a value of the sweep at {failure.key})")
        raise failure from None
    return Trial(index, config, swept | ({"seed": seed} if seeded else {}))


def shared_stage1(trials: list[Trial]) -> dict[str, list[Trial]]:
    """Group trials by the stage-1 job they need, in first-use order."""
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(trial.stage1_hash, []).append(trial)
    return groups


def trial_table(trials: list[Trial]) -> str:
    """The dry-run table: trial id, config hash, stage-1 job and every swept value."""
    columns = list(dict.fromkeys(key for trial in trials for key in trial.swept))
    jobs = {key: f"s1-{number}" for number, key in enumerate(shared_stage1(trials))}
    header = ["trial", "config hash", "stage-1 job", *columns]
    rows = [[trial.trial_id, trial.config_hash[:12], jobs[trial.stage1_hash],
             *(trial.swept.get(key, "") for key in columns)] for trial in trials]
    return format_table(header, rows, rule=True)


def generates(config: TrialConfig) -> bool:
    """A trial that samples and scores its samples (not a tokenizer trial, metrics asked)."""
    return config.gddcm is None and bool(config.eval.metrics)


def check_sizes(config: TrialConfig, splits: dict[str, int], file: str | Path | None = None
                ) -> None:
    """The reference set must fit in the split `eval.reference` names, and the real-data
    reference row's num_samples images in the other split."""
    reference = config.eval.reference
    if config.eval.num_images > splits[reference]:
        raise ConfigError(file, "eval.num_images", f"{config.eval.num_images} images, but the "
                          f"{reference} split of {config.dataset} holds {splits[reference]} "
                          f"(eval.reference: {reference})")
    other = "train" if reference == "eval" else "eval"
    if generates(config) and config.sample.num_samples > splits[other]:
        raise ConfigError(file, "sample.num_samples", f"{config.sample.num_samples} samples, "
                          f"but the real-data reference row compares as many real images "
                          f"from the {other} split of {config.dataset}, which holds "
                          f"{splits[other]}")


def check_metric_names(config: TrialConfig, file: str | Path | None = None) -> None:
    """What pydantic cannot check without the metric registry: the metric names."""
    from harness.metrics.evaluate import check_metric_names as check

    check(config.stage1.eval_metrics, "stage1.eval_metrics", file)
    check(config.eval.metrics, "eval.metrics", file, sets_only=True)


def check_gddcm(config: TrialConfig, resolution: int, file: Path | None) -> None:
    """A `gddcm` section against the process its times are in (this imports torch, so a
    dry run of an experiment without one does not)."""
    if config.gddcm is None:
        return
    from harness.diffusion.processes import process_of
    from harness.tokenizer.times import check_section

    check_section(config.gddcm, process_of(config.stage2), resolution, config.stage1.f, file)
