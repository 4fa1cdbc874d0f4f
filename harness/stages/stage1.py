"""Stage 1 of a trial (DESIGN section 3): the autoencoder E, D trained once per distinct
config into the shared cache, its evaluation (reconstruction metrics, latent and codebook
facts) cached beside it, and `load_stage1`, which every trial and stage-1 job goes through.

Training (seed 000 section 2.1): L = |x - x~|_1 + w_p LPIPS(x~, x) + lambda w_adv L_GAN +
(beta L_commit | w_kl KL), Adam, seeded batches; the loss terms are in `stage1_losses`.
"""

from __future__ import annotations

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
from harness.config import Stage1Config
from harness.data import Dataset, save_grid
from harness.data.tensors import to_model_range, to_uint8
from harness.keys import stage1_eval_key, stage1_key
from harness.metrics.evaluate import check_metric_names, evaluate
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import ReferenceKey
from harness.models import build_stage1
from harness.models.autoencoders.base import Stage1Model, Stage1Output
from harness.models.autoencoders.discriminator import PatchDiscriminator
from harness.models.autoencoders.ivq_vae import IVQVAE
from harness.models.autoencoders.quantizer import code_statistics
from harness.progress import Progress
from harness.runtime import Runtime, peak_memory_mb, reset_peak_memory
from harness.stages.checkpoints import Checkpoints, restore_rng_states, rng_states
from harness.stages.stage1_losses import (
    adaptive_weight,
    generator_loss,
    hinge_d_loss,
    perceptual_term,
)
from harness.tracking import TrackedRun

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]
ADAM_BETAS = (0.5, 0.9)  # VQGAN / LDM autoencoder training
EVAL_BATCH = 32
GRID_IMAGES = 32


@dataclass
class TrainResult:
    model: nn.Module
    seconds: float
    images_per_second: float
    final_loss: float
    history: list[float] = field(default_factory=list)  # total autoencoder loss per step
    final_logs: dict[str, float] = field(default_factory=dict)  # last window's mean terms
    perceptual_disabled: str | None = None  # why the LPIPS term was off, if it was
    perceptual_sha256: str | None = None
    step_seconds: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None  # on a GPU
    trained: bool = True  # False: nothing to fit (identity, a frozen pretrained model)


@dataclass(frozen=True)
class SpeedLevers:
    """How a step runs, not what it computes. benchmarks/stage1_throughput.py on 2 CPU cores:
    channels_last 0-20% more images/s (oneDNN skips its layout reorders); torch.compile
    (`resources.compile`) +20% before the GAN starts but -25% after it (the adaptive weight's
    double backward), plus 5-20 s of compilation, so it is off by default."""

    channels_last: bool = True


@dataclass
class _Adversary:
    """The patch discriminator, its optimizer and gradient scaler, active after `start`."""

    discriminator: PatchDiscriminator
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    start: int


@dataclass
class _Trainer:
    """What one stage-1 training step updates, and what a checkpoint holds."""

    model: Stage1Model
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    adversary: _Adversary | None
    rng: np.random.Generator  # batch indices
    step: int = 0
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    window: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # since the last log
    final_logs: dict[str, float] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        state = {"step": self.step, "seconds": self.seconds, "history": self.history,
                 "step_seconds": self.step_seconds, "window": self.window,
                 "final_logs": self.final_logs, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": rng_states(self.rng)}
        if self.adversary is not None:
            state["adversary"] = {"discriminator": self.adversary.discriminator.state_dict(),
                                  "optimizer": self.adversary.optimizer.state_dict(),
                                  "scaler": self.adversary.scaler.state_dict()}
        return state

    def restore(self, state: dict[str, Any]) -> None:
        self.step, self.seconds = state["step"], state["seconds"]
        self.history, self.step_seconds = state["history"], state["step_seconds"]
        device = next(self.model.parameters()).device
        self.window = {name: [value.to(device) for value in values]
                       for name, values in state["window"].items()}
        self.final_logs = state["final_logs"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.adversary is not None:
            self.adversary.discriminator.load_state_dict(state["adversary"]["discriminator"])
            self.adversary.optimizer.load_state_dict(state["adversary"]["optimizer"])
            self.adversary.scaler.load_state_dict(state["adversary"]["scaler"])
        restore_rng_states(state["rng"], self.rng)

    def flush(self) -> dict[str, float]:
        """The window's per-step values to the host in one transfer; their means."""
        flat = torch.stack([value for values in self.window.values() for value in values])
        values, start = flat.tolist(), 0
        self.final_logs = {}
        for name, terms in self.window.items():  # a term may start inside the window
            row, start = values[start:start + len(terms)], start + len(terms)
            self.final_logs[name] = float(np.mean(row))
            if name == "loss":
                self.history.extend(row)
        self.window = {}
        return self.final_logs


def train_stage1(config: Stage1Config, images: np.ndarray, runtime: Runtime = Runtime(),
                 log_metrics: LogFn | None = None, levers: SpeedLevers = SpeedLevers(),
                 checkpoints: Checkpoints = Checkpoints(), progress: Progress | None = None
                 ) -> TrainResult:
    """Fit the stage-1 autoencoder to `images` (uint8 NHWC) with Adam (seed 000 section 2.1):

        L = |x - x~|_1 + w_p LPIPS(x~, x) + lambda w_adv L_GAN + (beta L_commit | w_kl KL),

    L_GAN the hinge generator loss of a patch discriminator that starts training after
    `adversarial_start` steps, lambda VQGAN's adaptive weight (Eq. 7). Batches are seeded and
    drawn by index, so `images` may be a memory-mapped split larger than RAM. Losses stay on
    the device and reach the host every `config.log_every` steps; with `checkpoints` the run
    saves its state every `checkpoint_every` steps and resumes from the latest one.
    """
    torch.manual_seed(config.seed)
    device = runtime.device
    memory_format = torch.channels_last if levers.channels_last else torch.contiguous_format
    model = build_stage1(config).to(device, memory_format=memory_format)
    if not any(p.requires_grad for p in model.parameters()):  # the identity: nothing to fit
        log.info("stage 1 (%s) has no trainable parameters; nothing to train", config.kind)
        return TrainResult(model.eval().cpu(), 0.0, 0.0, float("nan"), trained=False)
    autoencode = model.autoencode
    if runtime.compile:
        # The adaptive GAN weight differentiates the graph twice (retain_graph), which
        # AOTAutograd's donated buffers do not allow.
        from torch._functorch import config as functorch_config

        functorch_config.donated_buffer = False
        autoencode = torch.compile(model.autoencode)
    perceptual = perceptual_term(config.perceptual_weight)
    if perceptual.loss is not None:
        perceptual.loss.to(device, memory_format=memory_format)
    adversary = None
    if config.adversarial_weight > 0 and config.adversarial_start < config.train_steps:
        discriminator = PatchDiscriminator(images.shape[1], config.channels).to(
            device, memory_format=memory_format)
        adversary = _Adversary(discriminator, torch.optim.Adam(
            discriminator.parameters(), lr=config.lr, betas=ADAM_BETAS), runtime.grad_scaler(),
            config.adversarial_start)
    trainer = _Trainer(model, torch.optim.Adam(model.parameters(), lr=config.lr,
                                               betas=ADAM_BETAS),
                       runtime.grad_scaler(), adversary, np.random.default_rng(config.seed))
    if (state := checkpoints.load()) is not None:
        trainer.restore(state)
    reset_peak_memory(device)
    if progress is not None:
        progress.start("stage1", config.train_steps, config.batch_size, trainer.step)
    model.train()
    while trainer.step < config.train_steps:
        step = trainer.step = trainer.step + 1
        begin = time.perf_counter()
        indices = trainer.rng.integers(0, len(images), config.batch_size)
        batch = to_model_range(images[indices]).to(device, memory_format=memory_format)
        terms = _train_step(trainer, autoencode, batch, config, perceptual.loss, runtime,
                            adversary if adversary and step > adversary.start else None)
        for name, value in terms.items():
            trainer.window.setdefault(name, []).append(value)
        trainer.step_seconds.append(time.perf_counter() - begin)
        trainer.seconds += trainer.step_seconds[-1]
        if step % config.log_every == 0 or step == config.train_steps:
            logs = trainer.flush()
            log.info("stage1 step %d/%d  %s", step, config.train_steps,
                     "  ".join(f"{name} {value:.4g}" for name, value in logs.items()))
            if log_metrics:
                log_metrics({f"stage1/train_{name}": value for name, value in logs.items()},
                            step)
        if checkpoints.due(step, config.train_steps):
            checkpoints.save(trainer.state())
        if progress is not None:
            progress.advance(step)
    if progress is not None:
        progress.finish()
    model.eval().cpu().to(memory_format=torch.contiguous_format)
    return TrainResult(model, trainer.seconds,
                       config.train_steps * config.batch_size / trainer.seconds,
                       trainer.history[-1], trainer.history, trainer.final_logs,
                       perceptual.disabled_reason, perceptual.weights_sha256,
                       trainer.step_seconds, peak_memory_mb(device))


def _train_step(trainer: _Trainer, autoencode: Callable[[torch.Tensor], Stage1Output],
                batch: torch.Tensor, config: Stage1Config, perceptual: nn.Module | None,
                runtime: Runtime, adversary: _Adversary | None) -> dict[str, torch.Tensor]:
    """One autoencoder update, then one discriminator update when the adversary is active;
    the loss terms come back detached, on the device (no host sync)."""
    model = trainer.model
    with runtime.autocast():
        out = autoencode(batch)
        reconstruction = out.reconstruction.float()
        terms = {"l1": (batch - reconstruction).abs().mean()}  # on [-1, 1]: 2x the [0, 1] L1
        reconstruction_loss = terms["l1"]
        if perceptual is not None:
            terms["lpips"] = perceptual(reconstruction, batch)
            reconstruction_loss = reconstruction_loss + config.perceptual_weight * terms["lpips"]
        loss = reconstruction_loss + out.regularization
        if adversary is not None:
            adversary.discriminator.requires_grad_(False)
            terms["g_loss"] = generator_loss(adversary.discriminator(reconstruction))
            terms["adaptive_weight"] = adaptive_weight(reconstruction_loss, terms["g_loss"],
                                                       model.last_layer())
            loss = loss + config.adversarial_weight * terms["adaptive_weight"] * terms["g_loss"]
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(loss).backward()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    if adversary is not None:
        adversary.discriminator.requires_grad_(True)
        with runtime.autocast():
            terms["d_loss"] = hinge_d_loss(adversary.discriminator(batch),
                                           adversary.discriminator(reconstruction.detach()))
        adversary.optimizer.zero_grad(set_to_none=True)
        adversary.scaler.scale(terms["d_loss"]).backward()
        adversary.scaler.step(adversary.optimizer)
        adversary.scaler.update()
    terms |= {"loss": loss, "regularization": out.regularization} | out.logs
    return {name: torch.as_tensor(value).detach().float() for name, value in terms.items()}


@torch.inference_mode()
def reconstruct(model: nn.Module, images: np.ndarray, batch_size: int,
                runtime: Runtime = Runtime()) -> np.ndarray:
    """Encode and decode uint8 NHWC images on the model's device; uint8 NHWC
    reconstructions."""
    device = next(model.parameters(), torch.empty(0, device=runtime.device)).device
    outputs = []
    for start in range(0, len(images), batch_size):
        with runtime.autocast():
            output = model(to_model_range(images[start:start + batch_size]).to(device))
        outputs.append(to_uint8(output.float()))
    return np.concatenate(outputs)


def _build_stage1(config: Stage1Config, dataset: Dataset, runtime: Runtime,
                  checkpoints: Checkpoints, run: TrackedRun | None, progress: Progress | None
                  ) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        log.info("training stage 1 (%s, f=%d) on %d images", config.kind, config.f,
                 len(dataset.train))
        result = train_stage1(config, dataset.train, runtime,
                              run.log_metrics if run is not None else None,
                              checkpoints=checkpoints, progress=progress)
        torch.save(result.model.state_dict(), folder / "model.pt")
        summary = {"train_seconds": result.seconds,
                   "params": float(result.model.parameter_count()),
                   "perceptual_loss": float(result.perceptual_disabled is None)}
        if result.trained:  # a model with nothing to fit has no training loss or speed
            summary |= {"train_images_per_second": result.images_per_second,
                        "final_train_loss": result.final_loss}
        if result.peak_memory_mb is not None:
            summary["train_peak_memory_mb"] = result.peak_memory_mb
        summary |= {f"final_train_{name}": value for name, value in result.final_logs.items()
                    if name != "loss"}
        tags = ({"perceptual_loss.disabled": result.perceptual_disabled}
                if result.perceptual_disabled else
                {"perceptual_loss.weights_sha256": str(result.perceptual_sha256)})
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        (folder / "tags.json").write_text(json.dumps(tags | runtime.tags(), indent=2))
        (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return build


@torch.inference_mode()
def latent_statistics(model: Stage1Model, images: np.ndarray, batch_size: int,
                      runtime: Runtime = Runtime()) -> dict[str, float]:
    """Latent shape (h, w, c) and std of E(x); codebook usage and perplexity for a VQ model."""
    latents, codes = [], []
    for start in range(0, len(images), batch_size):
        x = to_model_range(images[start:start + batch_size]).to(runtime.device)
        with runtime.autocast():
            latents.append(model.encode(x).float())
            if isinstance(model, IVQVAE):
                codes.append(model.code_indices(x))
    z = torch.cat(latents)
    stats = {"latent_h": z.shape[2], "latent_w": z.shape[3], "latent_c": z.shape[1],
             "latent_std": z.std().item()}
    if codes:
        perplexity, usage = code_statistics(torch.cat(codes), model.quantizer.K)
        stats |= {"codebook_perplexity": perplexity.item(), "codebook_usage": usage.item(),
                  "codebook_restarts": model.quantizer.restarts.item()}
    return {name: float(value) for name, value in stats.items()}


def _evaluate_stage1(model: Stage1Model, config: Stage1Config, dataset: Dataset,
                     cache: ArtifactCache, runtime: Runtime) -> Callable[[Path], None]:
    """Reconstruct the first eval_images of the eval split; the metrics of DESIGN section 6
    (a metric that cannot run is recorded unavailable with its reason) and latent facts."""
    def build(folder: Path) -> None:
        count = min(config.eval_images, len(dataset.eval))
        originals = np.asarray(dataset.eval[:count])
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        reconstructions = reconstruct(model, originals, EVAL_BATCH, runtime)
        seconds = time.perf_counter() - start
        reference = ReferenceKey(dataset.content_hash, "eval", count)
        # One call: the set metrics share one Inception pass; a metric that cannot run
        # (e.g. LPIPS on images under 32 px) comes back unavailable with its reason.
        fields = mlflow_fields(evaluate(originals, reconstructions, config.eval_metrics, cache,
                                        reference, bootstrap=0, device=runtime.device))
        metrics = fields.metrics | latent_statistics(model, originals, EVAL_BATCH, runtime)
        metrics |= {"eval_images": float(count), "eval_images_per_second": count / seconds}
        (folder / "evaluation.json").write_text(json.dumps(
            {"metrics": metrics, "tags": fields.tags}, indent=2))
        pairs = np.stack([originals[:GRID_IMAGES // 2], reconstructions[:GRID_IMAGES // 2]], 1)
        save_grid(pairs.reshape(-1, *originals.shape[1:]), folder / "reconstructions.png")
    return build


def load_stage1(config: Stage1Config, dataset: Dataset, cache: ArtifactCache,
                run: TrackedRun | None = None, runtime: Runtime = Runtime(),
                progress: Progress | None = None) -> tuple[Stage1Model, dict[str, Any], bool]:
    """The stage-1 model for `config` from the cache, on the runtime's device, trained first
    if it is not there (continuing from its latest checkpoint if an earlier run was killed).

    The summary holds the training facts and the stage-1 evaluation (both cached with the
    model) as flat floats; `run`, when given, also gets their tags and params, all under the
    `stage1/` prefix. `built` says whether this call trained the model.
    """
    config.check_resolution(dataset.resolution, dataset.manifest_path)
    check_metric_names(config.eval_metrics, "stage1.eval_metrics")
    key = stage1_key(config, dataset.content_hash, runtime.numerics())
    checkpoints = Checkpoints.for_entry(cache, "stage1", key, config.checkpoint_every)
    entry = cache.get_or_build("stage1", key, _build_stage1(config, dataset, runtime,
                                                             checkpoints, run, progress))
    if entry.built:
        checkpoints.clear()
    model = build_stage1(config)
    model.load_state_dict(torch.load(entry.path / "model.pt", map_location="cpu",
                                     weights_only=True))
    model = model.to(runtime.device).eval()
    evaluation = cache.get_or_build(
        "stage1-eval", stage1_eval_key(config, dataset.content_hash, runtime.numerics()),
        _evaluate_stage1(model, config, dataset, cache, runtime))
    fields = json.loads((evaluation.path / "evaluation.json").read_text())
    summary = json.loads((entry.path / "summary.json").read_text()) | fields["metrics"]
    if run is not None:
        # ("params": provenance that entries written before it moved to tags still hold)
        tags = (json.loads((entry.path / "tags.json").read_text()) | fields["tags"]
                | fields.get("params", {}))
        run.set_tags({f"stage1/{key}": value for key, value in tags.items()})
        if evaluation.built:
            run.log_artifact(evaluation.path / "reconstructions.png", "stage1")
    return model, summary, entry.built
