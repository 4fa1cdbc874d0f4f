"""A gDDCM trial (seed 002): the trial's trained stage 2 as an image tokenizer.

Instead of sampling, the reference images (the first eval.num_images of the eval split) are
tokenized and reconstructed with `harness.tokenizer.api.tokenize_and_reconstruct`, and the
run gets: the pairwise metrics of reconstruction against original, the set metrics of
eval.metrics (unavailable with a reason where N is too small), `tokenize/bits_per_image`,
`tokenize/seconds` and `tokenize/images_per_second`, a grid of originals over
reconstructions, the token file and the reconstructions it decodes to. `tokenizer_model`
turns a stage-1 and stage-2 pair (a trial's, or a cache entry's) into what the tokenizer
library works on.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import torch
from torch import nn

from harness.cache import ArtifactCache
from harness.config import PAIRWISE_RECONSTRUCTION_METRICS, TrialConfig
from harness.data.tensors import to_model_range, to_uint8
from harness.diffusion.processes import process_of
from harness.metrics.evaluate import evaluate
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import ReferenceKey
from harness.runtime import Runtime
from harness.stages.stage2 import Stage2Model, encode_images
from harness.tokenizer.api import tokenize_and_reconstruct
from harness.tokenizer.model import TokenizerModel
from harness.tracking import TrackedRun, scratch_dir

log = logging.getLogger(__name__)

GRID_PAIRS = 16  # each original beside its reconstruction
TOKENS_ARTIFACT = "tokens/tokens.npz"
RECONSTRUCTIONS_ARTIFACT = "tokens/reconstructions.npz"  # `images`, as `tokenize decode` writes


def tokenizer_model(stage1: nn.Module | None, stage2: Stage2Model, batch_size: int = 64
                    ) -> TokenizerModel:
    """Tokenize stage-2 latents z = E(x) * scale, reconstructions D(z / scale); without a
    stage 1 (a pixel-space model) pixels in [-1, 1]. Everything runs on the device of the
    stage-2 model, in float32 (a token file must decode bit for bit)."""
    device = next(stage2.denoiser.parameters()).device
    reference = str(stage2.path or "")
    process, prediction = process_of(stage2.config), stage2.config.prediction
    if stage1 is None:
        return TokenizerModel(stage2.denoiser, process, prediction, stage2.latent_shape,
                              lambda images: to_model_range(images).to(device), to_uint8,
                              reference)

    @torch.inference_mode()
    def to_images(z: torch.Tensor) -> np.ndarray:
        return np.concatenate([to_uint8(stage1.decode(z[i:i + batch_size] / stage2.scale))
                               for i in range(0, len(z), batch_size)])

    return TokenizerModel(stage2.denoiser, process, prediction, stage2.latent_shape,
                          lambda images: encode_images(stage1, images, batch_size) * stage2.scale,
                          to_images, reference)


def tokenize_and_evaluate(config: TrialConfig, stage1: nn.Module, stage2: Stage2Model,
                          train_images: np.ndarray, reference: np.ndarray,
                          reference_key: ReferenceKey, cache: ArtifactCache, run: TrackedRun,
                          runtime: Runtime = Runtime()) -> dict[str, float]:
    """Tokenize `reference` with config.gddcm and log what it costs and how close it comes.

    A setting the model cannot run (e.g. T_r beyond its T) raises ConfigError naming the
    `gddcm.` key, so the run ends FAILED with that reason and no number.
    """
    assert config.gddcm is not None
    model = tokenizer_model(stage1, stage2)
    if config.gddcm.init == 3:  # forward marginal of a random training latent (Sec. 3.1.3)
        model.reference_data = encode_images(stage1, train_images) * stage2.scale
    reconstructions, tokens, seconds = tokenize_and_reconstruct(model, reference, config.gddcm)
    count = len(reference)
    metrics = {"tokenize/num_images": float(count), "tokenize/seconds": seconds,
               "tokenize/images_per_second": count / seconds,
               "tokenize/bits_per_image": tokens.bits_per_image,
               "tokenize/tokens_per_image": float(tokens.tokens_per_image)}
    log.info("gDDCM: %d images in %.1f s, %g bits per image", count, seconds,
             tokens.bits_per_image)
    # One call: the set metrics share one Inception pass; one that cannot run says why.
    names = [*PAIRWISE_RECONSTRUCTION_METRICS, *config.eval.metrics]
    fields = mlflow_fields(evaluate(reference, reconstructions, names, cache, reference_key,
                                    bootstrap=config.eval.bootstrap, device=runtime.device))
    run.set_tags(fields.tags | {"tokenize/config_hash": tokens.meta["config_hash"]})
    folder = scratch_dir()
    try:
        tokens.save(folder / "tokens.npz")
        with (folder / "reconstructions.npz").open("wb") as handle:
            np.savez_compressed(handle, images=reconstructions)
        for name in ("tokens.npz", "reconstructions.npz"):
            run.log_artifact(folder / name, "tokens")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    pairs = np.stack([reference[:GRID_PAIRS], reconstructions[:GRID_PAIRS]], 1)
    run.log_grid(pairs.reshape(-1, *reference.shape[1:]), "reconstructions.png", "images")
    return metrics | fields.metrics
