"""Every key the harness identifies work by, in one place: config hashes and cache keys.

A cache key holds everything that changes the artifact and nothing that does not: a model's
key leaves out how it is evaluated or watched during training (`stage1.eval_*`,
`stage2.eval_*`), so changing an evaluation setting never retrains; an evaluation's key
holds the model's key, its settings and the metric networks' weights.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.config import Stage1Config, TrialConfig
from harness.models.pretrained_folder import folder_digest

STAGE1_CODE_VERSION = "stage1-2"  # bump when stage-1 training changes what it produces
STAGE2_CODE_VERSION = "fftd-1"  # bump when stage-2 training changes what it produces
STAGE1_EVAL_KEYS = ("eval_images", "eval_metrics")  # how stage 1 is evaluated
TRAINING_WATCH_KEYS = ("log_every", "checkpoint_every")  # how a training run is watched
STAGE2_EVAL_KEYS = ("eval_every", "eval_num_samples")  # how stage-2 training is watched
LPIPS_NETWORK = "lpips-alex"  # the stage-1 perceptual loss trains with these weights
EVAL_NETWORKS = ("lpips-alex", "inception-pool3")


def config_hash(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config, as hex."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def weights_sha256(network: str) -> str | None:
    """sha256 of the weights `network` would load now, None when there are none."""
    from harness.weights import WeightsUnavailable, resolve

    try:
        return resolve(network).sha256
    except WeightsUnavailable:
        return None


def stage1_key(config: Stage1Config, data_hash: str, numerics: dict[str, Any] | None = None
               ) -> str:
    """A stage-1 model: its config (less the evaluation and watch keys), the data's content,
    the code, the LPIPS weights its perceptual loss trains with (or none), and how its
    arithmetic ran where that is not plain fp32 (`Runtime.numerics`). A pretrained model is
    identified by a digest of its folder's config and weights, not by where the folder is."""
    lpips = weights_sha256(LPIPS_NETWORK) if config.perceptual_weight > 0 else None
    fields = {"stage1": config.model_dump(mode="json", exclude={*STAGE1_EVAL_KEYS,
                                                                *TRAINING_WATCH_KEYS}),
              "data": data_hash, "code": STAGE1_CODE_VERSION, "lpips": lpips}
    if config.kind == "pretrained" and config.path is not None:
        del fields["stage1"]["path"]
        fields["weights"] = folder_digest(config.path)
    return config_hash(fields | ({"numerics": numerics} if numerics else {}))


def stage1_eval_key(config: Stage1Config, data_hash: str,
                    numerics: dict[str, Any] | None = None) -> str:
    """A stage-1 evaluation: the model, its settings, the metric networks' weights."""
    weights = {network: weights_sha256(network) for network in EVAL_NETWORKS}
    return config_hash({"model": stage1_key(config, data_hash, numerics), "weights": weights,
                        "eval": {key: getattr(config, key) for key in STAGE1_EVAL_KEYS}})


def stage2_key(config: TrialConfig, stage1_model_key: str,
               numerics: dict[str, Any] | None = None, labels_hash: str | None = None) -> str:
    """A stage-2 model: its config (less how training is watched), the stage-1 model it was
    trained on, the trial's seed, the code, its arithmetic where not plain fp32, and for a
    conditional model the training labels (`Dataset.labels_hash`)."""
    fields = {"stage2": config.stage2.model_dump(mode="json", exclude={*STAGE2_EVAL_KEYS,
                                                                       *TRAINING_WATCH_KEYS}),
              "stage1": stage1_model_key, "seed": config.seed, "code": STAGE2_CODE_VERSION}
    if config.stage2.conditional:
        fields["labels"] = labels_hash
    return config_hash(fields | ({"numerics": numerics} if numerics else {}))
