"""A gDDCM trial (seed 002): the trial's trained stage 2 as an image tokenizer.

Instead of sampling, the reference images (the first eval.num_images of the eval split) are
tokenized and reconstructed with `harness.gddcm.api.tokenize_and_reconstruct`, and the run
gets: the pairwise metrics of reconstruction against original, the set metrics of
eval.metrics (unavailable with a reason where N is too small), `tokenize/bits_per_image`,
`tokenize/seconds` and `tokenize/images_per_second`, a grid of originals over
reconstructions, the token file and the reconstructions it decodes to.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np

from harness.cache import ArtifactCache
from harness.config import TrialConfig
from harness.data import save_grid
from harness.gddcm.api import tokenize_and_reconstruct
from harness.gddcm.model import latent_model
from harness.generation import Stage2Model, encode_images
from harness.metrics.evaluate import evaluate
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import ReferenceKey
from harness.models.base import Stage1Model
from harness.tracking import TrackedRun, log_params, scratch_dir

log = logging.getLogger(__name__)

PAIRWISE_METRICS = ("lpips", "ssim", "psnr", "l1")
GRID_PAIRS = 16  # each original beside its reconstruction
TOKENS_ARTIFACT = "tokens/tokens.npz"
RECONSTRUCTIONS_ARTIFACT = "tokens/reconstructions.npz"  # `images`, as `tokenize decode` writes


def tokenize_and_evaluate(config: TrialConfig, stage1: Stage1Model, stage2: Stage2Model,
                          train_images: np.ndarray, reference: np.ndarray,
                          reference_key: ReferenceKey, cache: ArtifactCache, run: TrackedRun
                          ) -> dict[str, float]:
    """Tokenize `reference` with config.gddcm and log what it costs and how close it comes.

    A setting the model cannot run (e.g. T_r beyond its T) raises ConfigError naming the
    `gddcm.` key, so the run ends FAILED with that reason and no number.
    """
    assert config.gddcm is not None
    model = latent_model(stage1, stage2.denoiser, config.stage2, stage2.latent_shape,
                         stage2.scale, str(stage2.path or ""))
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
    fields = mlflow_fields(evaluate(reference, reconstructions,
                                    [*PAIRWISE_METRICS, *config.eval.metrics], cache,
                                    reference_key))
    run.set_tags(fields.tags | {"tokenize/config_hash": tokens.meta["config_hash"]})
    log_params(run.client, run.run_id, fields.params)
    folder = scratch_dir()
    try:
        tokens.save(folder / "tokens.npz")
        with (folder / "reconstructions.npz").open("wb") as handle:
            np.savez_compressed(handle, images=reconstructions)
        pairs = np.stack([reference[:GRID_PAIRS], reconstructions[:GRID_PAIRS]], 1)
        save_grid(pairs.reshape(-1, *reference.shape[1:]), folder / "reconstructions.png")
        for name in ("tokens.npz", "reconstructions.npz"):
            run.log_artifact(folder / name, "tokens")
        run.log_artifact(folder / "reconstructions.png", "images")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return metrics | fields.metrics
