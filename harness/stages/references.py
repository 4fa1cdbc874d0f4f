"""Reference rows of a generation sweep: what real data, the stage-1 autoencoder and an
untrained denoiser score under the trials' own protocol (reference set, N, metrics).

A generation metric means little alone: FID 40 at N = 256 may be the floor two sets of real
images reach at that N. So every generation sweep computes, once per stage-1 model,

- `real data`: `sample.num_samples` real images that are not in the reference set against
  it, the value a perfect generator gets at this N (computed once per sweep);
- `stage-1 reconstructions`: those real images through the autoencoder, what a perfect
  stage 2 on that autoencoder reaches (it samples the latent distribution of real images);
- `untrained denoiser`: the trials' stage-2 architecture at initialisation, sampled and
  decoded like a trained one, the value of a model that learned nothing.

Each row is cached by what it depends on (dataset hash, reference split and N, compared
split and N, metrics, Inception weights, and for the last two the stage-1 model and the
stage-2 config), so a second sweep on the same data recomputes nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.cache import ArtifactCache
from harness.config import TrialConfig
from harness.data import Dataset
from harness.errors import ConfigError
from harness.keys import config_hash, stage1_key, weights_sha256
from harness.metrics.evaluate import evaluate
from harness.metrics.result import MlflowFields, mlflow_fields
from harness.metrics.sets import ReferenceKey, SetLabels
from harness.models import build_stage2
from harness.runtime import Runtime
from harness.stages.generate import generate, guidance_scale, sampled_set_labels, sampler_for
from harness.stages.stage1 import load_stage1, reconstruct
from harness.stages.stage2 import Stage2Model, encode_images, latent_scale

REFERENCE_ROW_KIND = "reference-row"
BATCH = 64


Fields = tuple[dict[str, float], dict[str, str]]  # MLflow metrics, tags


@dataclass(frozen=True)
class ReferenceRow:
    key: str  # real_data, stage1_recon, untrained
    label: str  # what a table prints
    description: str
    measure: Callable[[], Fields]  # (metrics, tags) from the cache, computed when missing


ROW_LABELS = {"real_data": "real data", "stage1_recon": "stage-1 reconstructions",
              "untrained": "untrained denoiser"}


def reference_set(config: TrialConfig, dataset: Dataset) -> tuple[np.ndarray, ReferenceKey]:
    """The first eval.num_images images of the split named by eval.reference (eval: crops of
    the training distribution no train crop overlaps; train: the CIFAR-10 protocol), and
    their cache key."""
    split = config.eval.reference
    images = dataset.eval if split == "eval" else dataset.train
    count = config.eval.num_images
    if count > len(images):
        raise ConfigError(None, "eval.num_images", f"{count} images, but the {split} split of "
                          f"{dataset.name} has only {len(images)} (eval.reference: {split})")
    return images[:count], ReferenceKey(dataset.content_hash, split, count)


def reference_labels(config: TrialConfig, dataset: Dataset) -> np.ndarray | None:
    """The class labels of `reference_set`'s images; None for unlabeled data."""
    labels = dataset.eval_labels if config.eval.reference == "eval" else dataset.train_labels
    return None if labels is None else np.asarray(labels[:config.eval.num_images])


def real_comparison_set(config: TrialConfig, dataset: Dataset) -> tuple[np.ndarray, str]:
    """`sample.num_samples` real images from the split the reference set is not drawn from:
    as many images as the trials generate, none of them in the reference set."""
    split = "train" if config.eval.reference == "eval" else "eval"
    images = dataset.train if split == "train" else dataset.eval
    count = config.sample.num_samples
    if count > len(images):
        raise ConfigError(None, "sample.num_samples", f"the real-data reference row needs "
                          f"{count} real images outside the reference set, but the {split} "
                          f"split of {dataset.name} has only {len(images)}")
    return images[:count], split


def _protocol(config: TrialConfig, dataset: Dataset) -> dict[str, Any]:
    """What every row's value depends on (with a conditional model: the labels too)."""
    protocol = {"dataset": dataset.content_hash, "reference": config.eval.reference,
                "num_reference": config.eval.num_images,
                "num_images": config.sample.num_samples, "metrics": config.eval.metrics,
                "bootstrap": config.eval.bootstrap,
                "inception": weights_sha256("inception-pool3"), "format": 1}
    if config.stage2.conditional:
        protocol["labels"] = dataset.labels_hash
    return protocol


def _row_labels(config: TrialConfig, dataset: Dataset, real_split: str, count: int
                ) -> tuple[SetLabels, SetLabels] | None:
    """For a conditional model's trials: the labels of the real-data and reconstruction rows
    (those of the real images) and of the untrained row (class-balanced, as trials sample)."""
    real_labels = reference_labels(config, dataset)
    compared = dataset.train_labels if real_split == "train" else dataset.eval_labels
    if not config.stage2.conditional or real_labels is None or compared is None:
        return None
    classes = tuple(dataset.classes)
    return (SetLabels(real_labels, np.asarray(compared[:count]), classes),
            sampled_set_labels(real_labels, count, classes))


def _cached(cache: ArtifactCache, key_fields: dict[str, Any],
            compute: Callable[[], MlflowFields]) -> Callable[[], Fields]:
    """A row's measurement: its (metrics, tags) from the cache, computed when missing."""
    def build(folder: Path) -> None:
        fields = compute()
        (folder / "row.json").write_text(json.dumps(
            {"key": key_fields, "metrics": fields.metrics, "tags": fields.tags}, indent=2))

    def measure() -> Fields:
        entry = cache.get_or_build(REFERENCE_ROW_KIND, config_hash(key_fields), build)
        row = json.loads((entry.path / "row.json").read_text())
        return row["metrics"], row["tags"]
    return measure


def untrained_model(config: TrialConfig, stage1: torch.nn.Module, train: np.ndarray,
                    runtime: Runtime = Runtime(), classes: tuple[str, ...] = ()
                    ) -> Stage2Model:
    """The trial's denoiser at step 0 (initialised from its seed), with the latent scale
    training would use; a conditional one for `classes`."""
    latents = encode_images(stage1, train, runtime=runtime)
    torch.manual_seed(config.seed)
    denoiser = build_stage2(config.stage2, latents.shape[1], latents.shape[-1],
                            len(classes)).eval()
    denoiser = denoiser.to(runtime.device)
    return Stage2Model(denoiser, config.stage2, latent_scale(latents),
                       tuple(latents.shape[1:]), classes=classes)


def reference_rows(config: TrialConfig, dataset: Dataset, cache: ArtifactCache,
                   with_real_data: bool = True, runtime: Runtime = Runtime()
                   ) -> list[ReferenceRow]:
    """The reference rows for the trials of one stage-1 model (`config`: the first of them),
    each measured when asked; `with_real_data=False` leaves out the row that does not
    depend on the stage-1 model (a sweep measures it once)."""
    reference, reference_key = reference_set(config, dataset)
    real, real_split = real_comparison_set(config, dataset)
    protocol = _protocol(config, dataset)
    count = len(real)
    stage1_model_key = stage1_key(config.stage1, dataset.content_hash, runtime.numerics())

    labels = _row_labels(config, dataset, real_split, count)
    real_labels, sampled_labels = labels if labels is not None else (None, None)

    def scored(images: Callable[[], np.ndarray], labels: SetLabels | None = None
               ) -> Callable[[], MlflowFields]:
        return lambda: mlflow_fields(evaluate(reference, images(), config.eval.metrics, cache,
                                              reference_key, bootstrap=config.eval.bootstrap,
                                              device=runtime.device, labels=labels))

    @functools.cache  # loaded once, for whichever rows are not in the cache yet
    def stage1() -> torch.nn.Module:
        return load_stage1(config.stage1, dataset, cache, runtime=runtime)[0]

    def untrained_samples() -> np.ndarray:
        autoencoder = stage1()
        classes = tuple(dataset.classes) if config.stage2.conditional else ()
        model = untrained_model(config, autoencoder, dataset.train, runtime, classes)
        return generate(autoencoder, model, sampler_for(config.sample, model), count,
                        config.sample.batch_size, config.seed, runtime,
                        guidance=guidance_scale(config.sample))

    against = f"{config.eval.num_images} {config.eval.reference}-split images"
    rows = [ReferenceRow(
        "stage1_recon", ROW_LABELS["stage1_recon"],
        f"the real-data row's {count} images through the stage-1 autoencoder, against "
        f"{against}: the best a latent model on it can reach",
        _cached(cache, protocol | {"row": "stage1_recon", "stage1": stage1_model_key},
                scored(lambda: reconstruct(stage1(), real, BATCH, runtime), real_labels))),
        ReferenceRow(
        "untrained", ROW_LABELS["untrained"],
        f"{count} samples of the trials' stage-2 model at step 0 (seed {config.seed}), "
        f"against {against}: the value of a model that learned nothing",
        _cached(cache, protocol | {"row": "untrained", "stage1": stage1_model_key,
                                   "stage2": config.stage2.model_dump(mode="json"),
                                   "sample": config.sample.model_dump(mode="json"),
                                   "seed": config.seed},
                scored(untrained_samples, sampled_labels)))]
    if with_real_data:
        rows.insert(0, ReferenceRow(
            "real_data", ROW_LABELS["real_data"],
            f"{count} real {real_split}-split images against {against}: the value a perfect "
            "generator gets at this N",
            _cached(cache, protocol | {"row": "real_data"}, scored(lambda: real, real_labels))))
    return rows
