"""Stage 2 of a trial: the latent denoiser trained on frozen stage-1 latents, cached, loaded.

Training minimises the process's loss (harness.diffusion.objectives) with AdamW and keeps an
EMA copy of the weights, which is what is cached and sampled. The cache entry is keyed by
harness.keys.stage2_key (its config less how training is watched, the stage-1 model, the
seed), so sampling-only sweeps (DDIM steps, eta) train it once. With `stage2.eval_every`
the EMA model is evaluated during training by a callback the trial passes in.

A conditional model (`stage2.conditioning`) trains on the images' class labels, each replaced
by the null label with probability p_uncond (label dropout, drawn from its own generator so
that the batches and noise are those of the unconditional model); its key holds the labels.

On disk an entry holds the EMA weights, `summary.json` and a model card
(`stage2_model.json`: the Stage2Config, the latent shape and scale, the stage-1 entry),
from which `load_entry` rebuilds the models without the trial (`harness tokenize`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from harness.cache import ArtifactCache
from harness.config import Stage1Config, Stage2Config, TrialConfig
from harness.data import Dataset
from harness.data.tensors import to_model_range
from harness.diffusion.objectives import make_objective
from harness.diffusion.processes import process_of
from harness.errors import ConfigError, HarnessError
from harness.keys import stage2_key
from harness.models import build_stage1, build_stage2
from harness.models.conditioning import NULL_LABEL
from harness.progress import Progress
from harness.runtime import Runtime, peak_memory_mb, reset_peak_memory
from harness.stages.checkpoints import Checkpoints, restore_rng_states, rng_states

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]
CARD = "stage2_model.json"
CARD_FORMAT = "harness-stage2-model-1"
WEIGHTS = "ema.pt"


@dataclass
class Stage2Model:
    denoiser: nn.Module  # the EMA weights
    config: Stage2Config
    scale: float  # latents are multiplied by it before diffusion (LDM 4.3.2)
    latent_shape: tuple[int, int, int]
    summary: dict[str, float] = field(default_factory=dict)
    built: bool = False
    path: Path | None = None  # the cache entry
    classes: tuple[str, ...] = ()  # a conditional model's class names; () if unconditional


@dataclass(frozen=True)
class TrainLabels:
    """The class labels a conditional model trains on, aligned with the training images."""

    labels: np.ndarray  # (N,) integers in [0, len(classes))
    classes: tuple[str, ...]
    digest: str | None = None  # Dataset.labels_hash: part of the model's cache key

    @classmethod
    def of(cls, config: Stage2Config, dataset: Dataset) -> TrainLabels | None:
        """The dataset's train labels for a conditional model, None for an unconditional one;
        a ConfigError when the model is conditional and the data has no labels."""
        if not config.conditional:
            return None
        if dataset.train_labels is None or not dataset.classes:
            raise ConfigError(None, "stage2.conditioning",
                              f"{config.conditioning} conditioning needs class labels, but "
                              f"dataset {dataset.name} ({dataset.manifest_path}, source "
                              f"{dataset.source}) has none")
        return cls(np.asarray(dataset.train_labels), tuple(dataset.classes),
                   dataset.labels_hash)


def label_generator(seed: int) -> torch.Generator:
    """The generator of label dropout: its own stream, so that a conditional model draws the
    batches and noise of the unconditional one."""
    digest = hashlib.sha256(f"label-dropout:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def drop_labels(labels: torch.Tensor, p_uncond: float, generator: torch.Generator
                ) -> torch.Tensor:
    """Each label replaced by NULL_LABEL with probability p_uncond (classifier-free guidance's
    joint training of the conditional and unconditional model)."""
    dropped = torch.rand(len(labels), generator=generator) < p_uncond
    return torch.where(dropped, NULL_LABEL, labels)


EvalHook = Callable[[int, Stage2Model], None]  # (step, the EMA model so far)


@torch.inference_mode()
def encode_images(stage1: nn.Module, images: np.ndarray, batch_size: int = 64,
                  runtime: Runtime = Runtime()) -> torch.Tensor:
    """z = E(x) for uint8 NHWC images, on the frozen stage-1 encoder's device."""
    device = next(stage1.parameters(), torch.empty(0, device=runtime.device)).device
    latents = []
    for start in range(0, len(images), batch_size):
        with runtime.autocast():
            x = to_model_range(images[start:start + batch_size]).to(device)
            latents.append(stage1.encode(x).float())
    return torch.cat(latents)


def latent_scale(latents: torch.Tensor) -> float:
    """1 / std of the training latents, so the diffusion sees unit-variance data (LDM 4.3.2)."""
    return float(1.0 / latents.float().std().clamp(min=1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """theta_ema <- d theta_ema + (1 - d) theta, with d warmed up as min(decay, (1+n)/(10+n))
    so that a short run is not dominated by the initial weights."""
    d = min(decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1 - d)


@dataclass
class Stage2Result:
    ema: nn.Module
    seconds: float
    images_per_second: float
    history: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None  # on a GPU


def train_stage2(config: Stage2Config, latents: torch.Tensor, seed: int,
                 runtime: Runtime = Runtime(), log_metrics: LogFn | None = None,
                 every: Callable[[int, nn.Module], None] | None = None,
                 checkpoints: Checkpoints = Checkpoints(), progress: Progress | None = None,
                 labels: TrainLabels | None = None) -> Stage2Result:
    """Minimise the process's loss on `latents` (already scaled) on the runtime's device;
    returns the EMA model. Batches and noise are drawn from one CPU generator seeded by
    `seed`, so they are the same on every device. Losses reach the host every
    `config.log_every` steps; `every(step, ema)` runs every `config.eval_every` steps; with
    `checkpoints` the run saves its state every `checkpoint_every` steps and resumes from the
    latest one. A conditional model takes the latents' `labels`, dropped with p_uncond."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    dropout = label_generator(seed)
    device = runtime.device
    num_classes = len(labels.classes) if labels is not None else 0
    if config.conditional and labels is None:
        raise ValueError(f"stage2.conditioning {config.conditioning} needs the latents' labels")
    targets = torch.as_tensor(labels.labels, dtype=torch.long) if labels is not None else None
    model = build_stage2(config, latents.shape[1], latents.shape[-1], num_classes).to(device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scaler = runtime.grad_scaler()
    forward = runtime.compiled(model)
    objective = make_objective(process_of(config), config.prediction, config.loss_weighting,
                               config.min_snr_gamma)
    latents = latents.to(device)
    step, seconds, history, window = 0, 0.0, [], []
    if (state := checkpoints.load()) is not None:
        step, seconds, history = state["step"], state["seconds"], state["history"]
        window = [loss.to(device) for loss in state["window"]]
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_states(state["rng"], generator=generator, label_dropout=dropout)
    reset_peak_memory(device)
    if progress is not None:
        progress.start("stage2", config.train_steps, config.batch_size, step)
    while step < config.train_steps:
        step += 1
        start = time.perf_counter()
        model.train()
        indices = torch.randint(0, len(latents), (config.batch_size,), generator=generator)
        batch = latents[indices.to(device)]
        denoiser = forward
        if targets is not None:
            batch_labels = drop_labels(targets[indices], config.label_dropout, dropout)
            denoiser = functools.partial(forward, labels=batch_labels.to(device))
        with runtime.autocast():
            loss = objective(denoiser, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        update_ema(ema, model, config.ema, step)
        seconds += time.perf_counter() - start
        window.append(loss.detach())
        if step % config.log_every == 0 or step == config.train_steps:
            history.extend(torch.stack(window).tolist())  # one host sync per window
            window = []
            recent = sum(history[-config.log_every:]) / len(history[-config.log_every:])
            log.info("stage2 step %d/%d  loss %.4f", step, config.train_steps, recent)
            if log_metrics:
                log_metrics({"stage2/train_loss": recent}, step)
        if every is not None and config.eval_every and step % config.eval_every == 0:
            every(step, ema)
        if checkpoints.due(step, config.train_steps):
            checkpoints.save({"step": step, "seconds": seconds, "history": history,
                              "window": window, "model": model.state_dict(),
                              "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                              "scaler": scaler.state_dict(),
                              "rng": rng_states(generator=generator,
                                                label_dropout=dropout)})
        if progress is not None:
            progress.advance(step)
    if progress is not None:
        progress.finish()
    return Stage2Result(ema.cpu(), seconds, config.train_steps * config.batch_size / seconds,
                        history, peak_memory_mb(device))


def load_stage2(config: TrialConfig, stage1: nn.Module, stage1_model_key: str,
                train_images: np.ndarray, cache: ArtifactCache, log_metrics: LogFn | None = None,
                periodic_eval: EvalHook | None = None, runtime: Runtime = Runtime(),
                progress: Progress | None = None, labels: TrainLabels | None = None
                ) -> Stage2Model:
    """The trained denoiser from the cache, on the runtime's device, trained on E(train
    images) first if missing (continuing from its latest checkpoint if an earlier run was
    killed); a conditional model on the images' `labels` (TrainLabels.of).

    Only a build encodes the whole training set; a cache hit reads the latent scale from
    the entry and takes the latent shape from one image.
    """
    shape = tuple(encode_images(stage1, train_images[:1], runtime=runtime).shape[1:])
    key = stage2_key(config, stage1_model_key, runtime.numerics(),
                     labels.digest if labels is not None else None)
    classes = labels.classes if labels is not None else ()
    checkpoints = Checkpoints.for_entry(cache, "stage2", key, config.stage2.checkpoint_every)

    def build(folder: Path) -> None:
        latents = encode_images(stage1, train_images, runtime=runtime)
        scale = latent_scale(latents)
        log.info("training stage 2 (%s, %s fusion) on %d latents of shape %s",
                 config.stage2.kind, config.stage2.fusion, len(latents), shape)

        def every(step: int, ema: nn.Module) -> None:
            if periodic_eval is not None:
                periodic_eval(step, Stage2Model(ema, config.stage2, scale, shape, built=True,
                                                classes=classes))

        result = train_stage2(config.stage2, latents * scale, config.seed, runtime,
                              log_metrics, every, checkpoints, progress, labels)
        torch.save(result.ema.state_dict(), folder / WEIGHTS)
        summary = {"train_seconds": result.seconds, "train_images_per_second":
                   result.images_per_second, "final_train_loss": float(np.mean(
                       result.history[-50:])), "latent_scale": scale,
                   "params": float(sum(p.numel() for p in result.ema.parameters()))}
        if result.peak_memory_mb is not None:
            summary["train_peak_memory_mb"] = result.peak_memory_mb
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        write_card(folder, config.stage2, shape, scale, cache.path("stage1", stage1_model_key),
                   classes)

    entry = cache.get_or_build("stage2", key, build)
    if entry.built:
        checkpoints.clear()
    summary = json.loads((entry.path / "summary.json").read_text())
    denoiser = _load_denoiser(config.stage2, shape, entry.path / WEIGHTS, len(classes))
    return Stage2Model(denoiser.to(runtime.device), config.stage2, summary["latent_scale"],
                       shape, summary, entry.built, entry.path, classes)


def _load_denoiser(config: Stage2Config, shape: tuple[int, ...], weights: Path,
                   num_classes: int = 0) -> nn.Module:
    denoiser = build_stage2(config, shape[0], shape[-1], num_classes)
    denoiser.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return denoiser.eval()


def write_card(folder: Path, config: Stage2Config, data_shape: tuple[int, ...],
               scale: float = 1.0, stage1_entry: Path | None = None,
               classes: tuple[str, ...] = ()) -> Path:
    """Describe the denoiser in `folder` so that `load_entry(folder)` can rebuild it; the
    stage-1 entry is its final cache path (None: a pixel-space model); a conditional model's
    class names."""
    card = {"format": CARD_FORMAT, "stage2": config.model_dump(mode="json"),
            "data_shape": list(data_shape), "scale": scale, "weights": WEIGHTS,
            "stage1": str(stage1_entry) if stage1_entry is not None else None}
    if classes:
        card["classes"] = list(classes)
    path = folder / CARD
    path.write_text(json.dumps(card, indent=2))
    return path


def _read_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD
    if not path.is_file():
        raise HarnessError(f"{folder}: no {CARD}; a stage-2 cache entry has one "
                           "(harness.stages.stage2.write_card)")
    card = json.loads(path.read_text())
    if card.get("format") != CARD_FORMAT:
        raise HarnessError(f"{path}: format {card.get('format')!r}, expected {CARD_FORMAT}")
    return card


def load_entry(folder: str | Path) -> tuple[nn.Module | None, Stage2Model]:
    """The stage-1 model (None for a pixel-space model) and the stage-2 model of a stage-2
    cache entry, from its card alone."""
    folder = Path(folder).resolve()
    card = _read_card(folder)
    config = Stage2Config.model_validate(card["stage2"])
    shape = tuple(card["data_shape"])
    classes = tuple(card.get("classes", ()))
    model = Stage2Model(_load_denoiser(config, shape, folder / card["weights"], len(classes)),
                        config, card["scale"], shape, path=folder, classes=classes)
    if card["stage1"] is None:
        return None, model
    stage1_dir = Path(card["stage1"])
    stage1 = build_stage1(Stage1Config.model_validate(
        yaml.safe_load((stage1_dir / "config.yaml").read_text())))
    stage1.load_state_dict(torch.load(stage1_dir / "model.pt", map_location="cpu",
                                      weights_only=True))
    return stage1.eval(), model
