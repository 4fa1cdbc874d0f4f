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
from harness.runtime import trial_device
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


@dataclass(frozen=True)
class SpeedLevers:
    """How a step runs, not what it computes. benchmarks/stage1_throughput.py on 2 CPU cores:
    channels_last 0-20% more images/s (oneDNN skips its layout reorders); torch.compile +20%
    before the GAN starts but -25% after it (the adaptive weight's double backward), plus
    5-20 s of compilation, so it is off by default."""

    channels_last: bool = True
    compile: bool = False


@dataclass
class _Adversary:
    """The patch discriminator and its optimizer, active after `start` steps."""

    discriminator: PatchDiscriminator
    optimizer: torch.optim.Optimizer
    start: int


def train_stage1(config: Stage1Config, images: np.ndarray, log_metrics: LogFn | None = None,
                 log_every: int = 50, levers: SpeedLevers = SpeedLevers()) -> TrainResult:
    """Fit the stage-1 autoencoder to `images` (uint8 NHWC) with Adam (seed 000 section 2.1):

        L = |x - x~|_1 + w_p LPIPS(x~, x) + lambda w_adv L_GAN + (beta L_commit | w_kl KL),

    L_GAN the hinge generator loss of a patch discriminator that starts training after
    `adversarial_start` steps, lambda VQGAN's adaptive weight (Eq. 7). Batches are seeded.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = trial_device()
    memory_format = torch.channels_last if levers.channels_last else torch.contiguous_format
    model = build_stage1(config).to(device, memory_format=memory_format)
    if not any(p.requires_grad for p in model.parameters()):  # the identity: nothing to fit
        log.info("stage 1 (%s) has no parameters; nothing to train", config.kind)
        return TrainResult(model.eval(), 0.0, 0.0, 0.0)  # its reconstruction L1 is exactly 0
    autoencode = model.autoencode
    if levers.compile:
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
            discriminator.parameters(), lr=config.lr, betas=ADAM_BETAS), config.adversarial_start)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=ADAM_BETAS)
    data = to_model_range(images)
    history: list[float] = []
    step_seconds: list[float] = []
    window: dict[str, list[float]] = {}
    final_logs: dict[str, float] = {}
    model.train()
    start = time.perf_counter()
    for step in range(1, config.train_steps + 1):
        begin = time.perf_counter()
        batch = data[rng.integers(0, len(data), config.batch_size)].to(
            device, memory_format=memory_format)
        terms = _train_step(model, autoencode, batch, config, perceptual.loss, optimizer,
                            adversary if adversary and step > adversary.start else None)
        history.append(terms["loss"])
        step_seconds.append(time.perf_counter() - begin)
        for name, value in terms.items():
            window.setdefault(name, []).append(value)
        if step % log_every == 0 or step == config.train_steps:
            final_logs = {name: float(np.mean(values)) for name, values in window.items()}
            window = {}
            log.info("stage1 step %d/%d  %s", step, config.train_steps,
                     "  ".join(f"{name} {value:.4g}" for name, value in final_logs.items()))
            if log_metrics:
                log_metrics({f"stage1/train_{name}": value for name, value in final_logs.items()},
                            step)
    seconds = time.perf_counter() - start
    model.eval().cpu().to(memory_format=torch.contiguous_format)
    return TrainResult(model, seconds, config.train_steps * config.batch_size / seconds,
                       history[-1], history, final_logs, perceptual.disabled_reason,
                       perceptual.weights_sha256, step_seconds)


def _train_step(model: Stage1Model, autoencode: Callable[[torch.Tensor], Stage1Output],
                batch: torch.Tensor, config: Stage1Config, perceptual: nn.Module | None,
                optimizer: torch.optim.Optimizer, adversary: _Adversary | None
                ) -> dict[str, float]:
    """One autoencoder update, then one discriminator update when the adversary is active."""
    out = autoencode(batch)
    terms = {"l1": (batch - out.reconstruction).abs().mean()}  # on [-1, 1]: 2x the [0, 1] L1
    reconstruction_loss = terms["l1"]
    if perceptual is not None:
        terms["lpips"] = perceptual(out.reconstruction, batch)
        reconstruction_loss = reconstruction_loss + config.perceptual_weight * terms["lpips"]
    loss = reconstruction_loss + out.regularization
    if adversary is not None:
        adversary.discriminator.requires_grad_(False)
        terms["g_loss"] = generator_loss(adversary.discriminator(out.reconstruction))
        terms["adaptive_weight"] = adaptive_weight(reconstruction_loss, terms["g_loss"],
                                                   model.last_layer())
        loss = loss + config.adversarial_weight * terms["adaptive_weight"] * terms["g_loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if adversary is not None:
        adversary.discriminator.requires_grad_(True)
        terms["d_loss"] = hinge_d_loss(adversary.discriminator(batch),
                                       adversary.discriminator(out.reconstruction.detach()))
        adversary.optimizer.zero_grad(set_to_none=True)
        terms["d_loss"].backward()
        adversary.optimizer.step()
    terms |= {"loss": loss, "regularization": out.regularization} | out.logs
    return {name: float(value.detach()) for name, value in terms.items()}


@torch.inference_mode()
def reconstruct(model: nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Encode and decode uint8 NHWC images; returns uint8 NHWC reconstructions."""
    device = next(model.parameters(), torch.empty(0)).device
    outputs = [to_uint8(model(to_model_range(images[i:i + batch_size]).to(device)))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs)


def _build_stage1(config: Stage1Config, dataset: Dataset, run: TrackedRun | None
                  ) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        log.info("training stage 1 (%s, f=%d) on %d images", config.kind, config.f,
                 len(dataset.train))
        result = train_stage1(config, dataset.train,
                              run.log_metrics if run is not None else None)
        torch.save(result.model.state_dict(), folder / "model.pt")
        summary = {"train_seconds": result.seconds,
                   "train_images_per_second": result.images_per_second,
                   "final_train_loss": result.final_loss,
                   "params": float(result.model.parameter_count()),
                   "perceptual_loss": float(result.perceptual_disabled is None)}
        summary |= {f"final_train_{name}": value for name, value in result.final_logs.items()
                    if name != "loss"}
        tags = ({"perceptual_loss.disabled": result.perceptual_disabled}
                if result.perceptual_disabled else
                {"perceptual_loss.weights_sha256": str(result.perceptual_sha256)})
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        (folder / "tags.json").write_text(json.dumps(tags, indent=2))
        (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return build


@torch.inference_mode()
def latent_statistics(model: Stage1Model, images: np.ndarray, batch_size: int
                      ) -> dict[str, float]:
    """Latent shape (h, w, c) and std of E(x); codebook usage and perplexity for a VQ model."""
    latents, codes = [], []
    for start in range(0, len(images), batch_size):
        x = to_model_range(images[start:start + batch_size])
        latents.append(model.encode(x))
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
                     cache: ArtifactCache) -> Callable[[Path], None]:
    """Reconstruct the first eval_images of the eval split; the metrics of DESIGN section 6
    (a metric that cannot run is recorded unavailable with its reason) and latent facts."""
    def build(folder: Path) -> None:
        count = min(config.eval_images, len(dataset.eval))
        originals = dataset.eval[:count]
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        reconstructions = reconstruct(model, originals, EVAL_BATCH)
        seconds = time.perf_counter() - start
        reference = ReferenceKey(dataset.content_hash, "eval", count)
        # One call: the set metrics share one Inception pass; a metric that cannot run
        # (e.g. LPIPS on images under 32 px) comes back unavailable with its reason.
        fields = mlflow_fields(evaluate(originals, reconstructions, config.eval_metrics, cache,
                                        reference, bootstrap=0))
        metrics = fields.metrics | latent_statistics(model, originals, EVAL_BATCH)
        metrics |= {"eval_images": float(count), "eval_images_per_second": count / seconds}
        (folder / "evaluation.json").write_text(json.dumps(
            {"metrics": metrics, "tags": fields.tags}, indent=2))
        pairs = np.stack([originals[:GRID_IMAGES // 2], reconstructions[:GRID_IMAGES // 2]], 1)
        save_grid(pairs.reshape(-1, *originals.shape[1:]), folder / "reconstructions.png")
    return build


def load_stage1(config: Stage1Config, dataset: Dataset, cache: ArtifactCache,
                run: TrackedRun | None = None) -> tuple[Stage1Model, dict[str, Any], bool]:
    """The stage-1 model for `config` from the cache, trained first if it is not there.

    The summary holds the training facts and the stage-1 evaluation (both cached with the
    model) as flat floats; `run`, when given, also gets their tags and params, all under the
    `stage1/` prefix. `built` says whether this call trained the model.
    """
    config.check_resolution(dataset.resolution, dataset.manifest_path)
    check_metric_names(config.eval_metrics, "stage1.eval_metrics")
    entry = cache.get_or_build("stage1", stage1_key(config, dataset.content_hash),
                               _build_stage1(config, dataset, run))
    model = build_stage1(config)
    model.load_state_dict(torch.load(entry.path / "model.pt", weights_only=True))
    model.eval()
    evaluation = cache.get_or_build("stage1-eval", stage1_eval_key(config, dataset.content_hash),
                                    _evaluate_stage1(model, config, dataset, cache))
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
