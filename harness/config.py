"""Experiment YAML schema: load a file, apply profiles and --set overrides, validate.

Every section of an experiment is here as pure data (no torch, no model imported). The
schema is strict (unknown keys are errors). Any leaf may be a sweep spec; those are
expanded by `harness.sweep` into one fully resolved `TrialConfig` per trial, and every
trial is validated against the same section models that the file is. Model kinds are
checked against `harness.models`' registries, which import no model to list their names.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.diffusion import FLOW_SAMPLERS, PROCESSES, SAMPLER_SPACINGS, SAMPLERS, SPACINGS
from harness.errors import ConfigError
from harness.models import STAGE1, STAGE2
from harness.models.pretrained_folder import read_folder
from harness.registry import registered

Stage1Kind = registered(STAGE1)
Stage2Kind = registered(STAGE2)
ProcessName = registered(PROCESSES)
SamplerName = registered(SAMPLERS)

SWEEP_KEYS = ("sweep", "choice", "uniform", "loguniform")
DEFAULT_P_UNCOND = 0.1  # label dropout of DiT and LDM's class-conditional models


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def without_defaults(data: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """A dump without the keys added later while they hold the value they default to (None:
    unset): the dump, and so the config hashes and cache keys, stay what they were before
    those keys existed."""
    return {key: value for key, value in data.items()
            if key not in defaults or value != defaults[key]}


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


# Metrics of a reconstruction against its original (harness.metrics names): the stage-1
# evaluation's default, gDDCM trials' and `harness metrics --pairs`.
PAIRWISE_RECONSTRUCTION_METRICS = ("l1", "lpips", "psnr", "ssim")
RECONSTRUCTION_METRICS = (*PAIRWISE_RECONSTRUCTION_METRICS, "rfid")


class Stage1Config(Section):
    """Stage-1 autoencoder E, D with compression factor f = H / h (DESIGN section 4).

    Loss (seed 000 section 2.1, LDM section 3.1): L1 + perceptual_weight * LPIPS
    + adaptive adversarial_weight * hinge GAN term (from step adversarial_start)
    + beta * commitment (ivq_vae) or kl_weight * KL (kl). Kind pretrained trains nothing: it
    loads a diffusers autoencoder from `path` (harness.models.autoencoders.pretrained).
    """

    kind: Stage1Kind = Field("ivq_vae", description="autoencoder family / latent "
                             "regularizer, registered in harness.models.STAGE1: " +
                             STAGE1.describe())
    path: str | None = Field(
        None, validate_default=True, description="kind pretrained: the folder a diffusers "
        "AutoencoderKL or VQModel was saved to (save_pretrained), absolute or from the working "
        "directory; f and latent_channels are read from its config.json (a value given must "
        "agree). Other kinds take no path")
    f: int = Field(4, description="spatial compression factor f = H/h = 2^m")
    K: int = Field(256, description="codebook size of the vector quantizer, a power of two")
    latent_channels: int = Field(4, ge=1, description="c of the h x w x c latent")
    channels: int = Field(16, ge=1, description="width of the first resolution level")
    channel_mult: list[int] | None = Field(
        None, min_length=1, description="width of level l = channels * channel_mult[l] (last "
        "entry repeated for deeper levels); default min(2^l, 4)")
    num_res_blocks: int = Field(1, ge=0, description="residual blocks per resolution level")
    attention_heads: int = Field(4, ge=1, description="heads of the self-attention at the "
                                 "lowest resolution")
    attention_max_tokens: int = Field(
        256, ge=0, description="the attention runs only where the lowest resolution has at most "
        "this many positions h*w (its cost grows as (h*w)^2); 0: never")
    perceptual_weight: float = Field(1.0, ge=0, description="weight of the LPIPS term")
    adversarial_weight: float = Field(0.5, ge=0, description="weight of the patch-GAN term "
                                      "(times VQGAN's adaptive weight)")
    adversarial_start: int = Field(200, ge=0, description="warm-up steps before the "
                                   "discriminator and the GAN term start")
    beta: float = Field(0.25, ge=0, description="commitment weight beta (VQ-VAE Eq. 3)")
    ema_decay: float = Field(0.99, ge=0, lt=1, description="EMA decay gamma of the codebook")
    dead_code_threshold: float = Field(
        0.1, ge=0, description="a code whose EMA count falls below this fraction of its fair "
        "share (batch vectors / K) is restarted from a random encoder output")
    kl_weight: float = Field(1e-6, ge=0, description="weight of the KL term (kind kl)")
    train_steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of E, D and the discriminator")
    seed: int = Field(0, description="stage 1 has its own seed so that arms can share it")
    eval_images: int = Field(256, ge=1, description="eval-split images (at most the split) "
                             "the stage-1 evaluation reconstructs")
    eval_metrics: list[str] = Field(
        default_factory=lambda: list(RECONSTRUCTION_METRICS),
        description="reconstruction metrics of the stage-1 evaluation (harness.metrics names)")
    log_every: int = Field(50, ge=1, description="mean training losses logged every N steps")
    checkpoint_every: int = Field(
        1000, ge=0, description="save a resumable checkpoint every N steps (0: never)")

    @model_validator(mode="before")
    @classmethod
    def _pretrained_shape(cls, data: Any) -> Any:
        """Kind pretrained: f and latent_channels default to the folder's."""
        if isinstance(data, dict) and data.get("kind") == "pretrained":
            try:
                folder = read_folder(data.get("path"))
            except (TypeError, ValueError):
                return data  # reported as stage1.path
            return {"f": folder.f, "latent_channels": folder.latent_channels} | data
        return data

    @field_validator("path")
    @classmethod
    def _pretrained_folder(cls, path: str | None, info: ValidationInfo) -> str | None:
        """The absolute path, so that a worker in another directory finds the folder."""
        if "kind" not in info.data:
            return path  # an invalid kind is reported already
        if info.data["kind"] != "pretrained":
            if path is not None:
                raise ValueError(f"only kind pretrained reads a folder, not {info.data['kind']}")
            return path
        if path is None:
            raise ValueError("kind pretrained needs the folder of a diffusers AutoencoderKL or "
                             "VQModel saved with save_pretrained")
        return str(read_folder(path).path)

    @field_validator("f", "latent_channels")
    @classmethod
    def _pretrained_agrees(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("kind") == "pretrained" and info.data.get("path"):
            folder = read_folder(info.data["path"])
            expected = getattr(folder, str(info.field_name))
            if value != expected:
                raise ValueError(f"the {folder.class_name} in {folder.path} has "
                                 f"{info.field_name}={expected}; leave stage1.{info.field_name} "
                                 f"out or set it to {expected}, got {value}")
        return value

    @model_serializer(mode="wrap")
    def _without_unset_path(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_defaults(handler(self), path=None)

    @field_validator("f")
    @classmethod
    def _f_power_of_two(cls, f: int, info: ValidationInfo) -> int:
        if not _is_power_of_two(f):
            raise ValueError(f"f must be a power of two (1, 2, 4, ...), got {f}")
        if info.data.get("kind") == "identity" and f != 1:
            raise ValueError(f"the identity stage 1 does not compress: f must be 1, got {f}")
        return f

    @field_validator("K")
    @classmethod
    def _k_power_of_two(cls, k: int) -> int:
        if not _is_power_of_two(k):
            raise ValueError(f"K must be a positive power of two, got {k}")
        return k

    @field_validator("channel_mult")
    @classmethod
    def _positive_mult(cls, mult: list[int] | None) -> list[int] | None:
        if mult is not None and min(mult) < 1:
            raise ValueError(f"channel multipliers must be >= 1, got {mult}")
        return mult

    @field_validator("attention_heads")
    @classmethod
    def _heads_divide_width(cls, heads: int, info: ValidationInfo) -> int:
        if not {"kind", "f", "channels", "channel_mult"} <= info.data.keys():
            return heads  # an earlier key is invalid and reported already
        width = cls.level_widths(info.data["f"], info.data["channels"],
                                 info.data["channel_mult"])[-1]
        if info.data["kind"] in ("ivq_vae", "kl") and width % heads:  # the kinds with it
            raise ValueError(f"attention_heads={heads} must divide the {width} channels at the "
                             f"lowest resolution (channels x multiplier for f={info.data['f']})")
        return heads

    @staticmethod
    def level_widths(f: int, channels: int, channel_mult: list[int] | None) -> list[int]:
        """Width of each of the log2(f) + 1 resolution levels: channels * mult[level].

        Default rule mult = min(2^level, 4); a given channel_mult is cut to the levels there
        are, its last entry repeated when it is shorter, so one list serves every f of a sweep.
        """
        levels = f.bit_length()
        mult = channel_mult or [min(2**level, 4) for level in range(levels)]
        return [channels * mult[min(level, len(mult) - 1)] for level in range(levels)]

    def check_resolution(self, resolution: int, file: str | Path | None = None) -> None:
        """f must not exceed (and must divide) the image side; a ConfigError naming stage1.f."""
        if self.f > resolution or resolution % self.f:
            largest = resolution & -resolution  # the largest power of two dividing it
            problem = "is larger than" if self.f > resolution else "does not divide"
            raise ConfigError(file, "stage1.f", f"f={self.f} {problem} the {resolution}x"
                              f"{resolution} images of the dataset; the largest f they allow "
                              f"is {largest}")


class Stage2Config(Section):
    """Stage-2 latent denoiser (FFTD, seed 000 section 2.2; or a diffusers UNet2DModel or DiT
    backbone, harness.models.denoisers) and its diffusion training.

    `eval_every`, `eval_num_samples`, `log_every` and `checkpoint_every` set how training is
    watched, not what it produces, so they are not part of the stage-2 cache key
    (harness.keys)."""

    kind: Stage2Kind = Field("fftd", description="denoiser, registered in "
                             "harness.models.STAGE2: " + STAGE2.describe())
    fusion: Literal["add", "concat", "adaptive"] = Field(
        "adaptive", description="FFTD's merge of decoder and skip features; unet2d and dit "
        "ignore it")
    channels: int = Field(32, ge=4, description="width of the first level (fftd, unet2d) or "
                          "of the transformer (dit)")
    channel_mult: list[int] = Field(
        default_factory=lambda: [1, 2], min_length=1, description="level widths channels * "
        "mult (fftd, unet2d); dit ignores it")
    heads: int = Field(4, ge=1, description="attention heads (fftd, dit); unet2d: heads at "
                       "width `channels`, more in proportion at wider levels")
    attention_resolution: int = Field(16, ge=1, description="self-attention at latent sizes "
                                      "at and below it (fftd, unet2d); dit attends everywhere")
    depth: int | None = Field(
        None, ge=1, description="dit: transformer blocks (default 4); unet2d: residual blocks "
        "per level (default 1); fftd ignores it (one block per level)")
    dropout: float = Field(0.0, ge=0, lt=1)
    T: int = Field(500, ge=2, description="number of forward diffusion steps")
    beta_schedule: Literal["linear", "scaled_linear", "cosine"] = "scaled_linear"
    process: ProcessName = Field("ddpm", description="forward process, registered in "
                                 "harness.diffusion.PROCESSES: " + PROCESSES.describe())
    prediction: Literal["eps", "v", "x0"] = "eps"
    loss_weighting: Literal["uniform", "min_snr"] = "uniform"
    min_snr_gamma: float = Field(5.0, gt=0)
    train_steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    ema: float = Field(0.999, ge=0, lt=1, description="EMA decay of the weights")
    eval_every: int = Field(0, ge=0, description="KID (and FID) every N steps; 0: only at the end")
    eval_num_samples: int = Field(64, ge=2, description="samples per periodic evaluation")
    log_every: int = Field(50, ge=1, description="mean training loss logged every N steps")
    checkpoint_every: int = Field(
        1000, ge=0, description="save a resumable checkpoint every N steps (0: never)")
    scale_shift: bool = Field(
        False, description="fftd, unet2d: the time (and class) embedding scales and shifts "
        "each channel after the residual block's second GroupNorm (ADM) instead of being "
        "added before it, where a GroupNorm of one channel per group (fftd's widths up to 32) "
        "erases it; dit ignores it")
    conditioning: Literal["none", "class", "cross_attention"] = Field(
        "none", description="class labels of the data (LDM section 3.3): none (unconditional); "
        "class (a class embedding added to the time embedding; fftd, unet2d); cross_attention "
        "(cross-attention to condition tokens from a learned table tau_theta, LDM Eq. 3; fftd)")
    p_uncond: float | None = Field(
        None, ge=0, le=1, description="label dropout: the probability a training label is "
        "replaced by the null label, training the unconditional model for classifier-free "
        "guidance too (default 0.1 with conditioning; 1: an unconditional model)")
    condition_tokens: int | None = Field(
        None, ge=1, description="cross_attention: tokens per label in tau_theta's table "
        "(default 4)")

    @field_validator("heads")
    @classmethod
    def _heads_divide_width(cls, heads: int, info: ValidationInfo) -> int:
        channels = info.data.get("channels")
        if info.data.get("kind") in ("unet2d", "dit") and channels and channels % heads:
            raise ValueError(f"heads={heads} must divide channels={channels} "
                             f"({info.data['kind']}'s head width is channels / heads)")
        return heads

    @model_serializer(mode="wrap")
    def _without_later_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_defaults(handler(self), depth=None, p_uncond=None,
                                condition_tokens=None, scale_shift=False, conditioning="none")

    @field_validator("p_uncond", "condition_tokens")
    @classmethod
    def _needs_conditioning(cls, value: object, info: ValidationInfo) -> object:
        conditioning = info.data.get("conditioning", "none")
        if value is not None and conditioning == "none":
            raise ValueError("applies to a conditional model; set stage2.conditioning to "
                             "class or cross_attention")
        if (info.field_name == "condition_tokens" and value is not None
                and conditioning != "cross_attention"):
            raise ValueError("applies to conditioning: cross_attention only")
        return value

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"

    @property
    def label_dropout(self) -> float:
        """p_uncond, or its default (DiT's and LDM's 0.1) for a conditional model."""
        if not self.conditional:
            return 0.0
        return DEFAULT_P_UNCOND if self.p_uncond is None else self.p_uncond

    @field_validator("prediction")
    @classmethod
    def _flow_prediction(cls, value: str, info: ValidationInfo) -> str:
        if value == "eps" and info.data.get("process") == "rectified_flow":
            raise ValueError("rectified_flow with eps prediction has no velocity at t = 1 "
                             "(pure noise); use v or x0")
        return value

    @field_validator("loss_weighting")
    @classmethod
    def _flow_weighting(cls, value: str, info: ValidationInfo) -> str:
        if value != "uniform" and info.data.get("process") == "rectified_flow":
            raise ValueError("rectified_flow trains with uniform weighting")
        return value


class SampleConfig(Section):
    sampler: SamplerName = Field("ddim", description="registered in "
                                 "harness.diffusion.SAMPLERS: " + SAMPLERS.describe())
    ddim_steps: int = Field(50, ge=1, description="steps S out of T of any sampler but ddpm "
                            "(all T): DDIM's S; for the diffusers schedulers the number of "
                            "scheduler steps, whose model calls (Heun 2S - 1) are logged as "
                            "sample/nfe")
    nfe: int | None = Field(
        None, ge=1, description="instead of ddim_steps: the number of function evaluations "
        "per sample; S is then the most steps whose NFE stays within it (Heun: (NFE + 1) / 2, "
        "PNDM: NFE - 1), logged as sample/steps")
    eta: float = Field(0.0, ge=0, description="DDIM's eta; the other samplers ignore it")
    timestep_spacing: Literal["linspace", "leading", "trailing", "quadratic"] = Field(
        "linspace", validate_default=True, description="which S of the T timesteps "
        "(harness.diffusion.spacing): linspace (round(linspace(0, T-1, S))), leading, "
        "trailing (as diffusers), quadratic (DDIM's CIFAR-10 grid up to 0.8 T); ddpm takes "
        "all T; unset, a sampler that takes one spacing only gets it (pndm: leading)")
    num_samples: int = Field(256, ge=1, description="samples per trial; a conditional "
                             "model draws them class-balanced (labels i mod classes)")
    batch_size: int = Field(128, ge=1)
    guidance_scale: float | None = Field(
        None, ge=0, description="classifier-free guidance s of a conditional model: eps = "
        "eps_u + s (eps_c - eps_u); 1 (the default) is plain conditional sampling, 0 "
        "unconditional; any other s evaluates the model twice per step (sample/nfe doubles)")

    @model_serializer(mode="wrap")
    def _without_unset_guidance(self, handler: SerializerFunctionWrapHandler
                                ) -> dict[str, Any]:
        return without_defaults(handler(self), guidance_scale=None)

    @model_validator(mode="before")
    @classmethod
    def _sampler_own_spacing(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("timestep_spacing") is None:
            data = {key: value for key, value in data.items() if key != "timestep_spacing"}
            only = SAMPLER_SPACINGS.get(data.get("sampler", "ddim"), ())
            if len(only) == 1:
                data["timestep_spacing"] = only[0]
        return data

    @field_validator("nfe")
    @classmethod
    def _nfe_needs_steps(cls, nfe: int | None, info: ValidationInfo) -> int | None:
        if nfe is not None and info.data.get("sampler") == "ddpm":
            raise ValueError("ddpm takes all T steps (NFE = T); leave sample.nfe unset")
        return nfe

    @field_validator("timestep_spacing")
    @classmethod
    def _spacing_fits_sampler(cls, spacing: str, info: ValidationInfo) -> str:
        allowed = SAMPLER_SPACINGS.get(info.data.get("sampler", ""), SPACINGS)
        if spacing not in allowed:
            raise ValueError(f"{info.data['sampler']} takes timestep_spacing "
                             f"{' or '.join(allowed)}, not {spacing}")
        return spacing


class EvalConfig(Section):
    """Set metrics of a trial's generated samples against the real eval split."""

    metrics: list[str] = Field(
        default_factory=lambda: ["fid", "kid", "pr", "is"],
        description="set metrics of the samples (harness.metrics names); [] skips them")
    num_images: int = Field(256, ge=1, description="real images of the reference set")
    reference: Literal["eval", "train"] = Field(
        "eval", description="the split samples are compared with: eval (held-out crops of the "
        "training distribution) or train (the CIFAR-10 protocol)")
    bootstrap: int = Field(
        100, ge=0, description="bootstrap rounds over the generated set's features for the "
        "95% intervals of FID, KID and IS (no new Inception pass); 0: no intervals")


class ResourcesConfig(Section):
    """What each trial runs on and how (harness.runtime): Ray gives a trial its CPUs and GPUs,
    and every stage of the trial runs on that one device."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial; a fraction lets "
                                  "trials share one (0.5: two per GPU)")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the models' training, sampling and decoding "
        "(fp16 with a gradient scaler; TF32 on for bf16 and fp16); metric networks stay fp32")
    compile: bool = Field(False, description="torch.compile the models for training")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="default: as many as the cluster's CPUs allow")


class ReportMetric(Section):
    name: str
    better: Literal["lower", "higher", "none"] | None = Field(
        None, description="direction of better; default from the metric's name; none: a "
        "column that is not ranked (e.g. latent resolution)")
    label: str | None = Field(None, description="header text; default from the name")
    unit: str | None = Field(None, description="unit in the header, e.g. dB")
    decimals: int | None = Field(None, ge=0, le=10, description="decimals shown")


class ReportPlot(Section):
    x: str = Field(description="param key on the x axis, e.g. stage1.K, or a metric a trial "
                   "logs, e.g. sample/nfe")
    lines: list[str] | None = Field(
        None, description="swept keys that make one line each (default: every swept key but "
        "x); with a metric on x, name them (e.g. [sample.sampler])")
    points: str | None = Field(
        None, description="a swept key (e.g. sample.guidance_scale): one point per value, "
        "labeled with it and joined in its order, for a trade-off curve with a metric on x "
        "(FID against precision)")
    metrics: list[str] = Field(default_factory=list, description="default: the report's")
    logx: bool = False
    logy: bool = False
    fit: bool = Field(False, description="power-law fit on log-log axes, slope in the legend")


class ReportConfig(Section):
    rows: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list)
    metrics: list[ReportMetric] = Field(default_factory=list)
    plots: list[ReportPlot] | None = Field(
        None, description="default: one plot per numeric axis; [] for none")
    curves: list[str] | None = Field(
        None, description="metrics plotted against training step; default: every metric "
        "logged at more than one step; [] for none")


class CheckTolerance(Section):
    """How much worse a metric may get before `harness check` fails: abs or rel, not both."""

    abs: float | None = Field(None, ge=0, description="allowed change for the worse, in the "
                              "metric's units")
    rel: float | None = Field(None, ge=0, description="allowed change for the worse, as a "
                              "fraction of the baseline's magnitude")
    better: Literal["higher", "lower"] | None = Field(
        None, description="direction of better; default from the metric registry")

    @model_validator(mode="after")
    def _one_bound(self) -> CheckTolerance:
        if (self.abs is None) == (self.rel is None):
            raise ValueError("give exactly one of abs and rel, e.g. {abs: 0.05} or {rel: 0.02}")
        return self


class CheckConfig(Section):
    """Tolerances of the regression gate (`harness check`), keyed by a logged metric's full
    name (`stage1/psnr`) or its registered name (`psnr`: every `*/psnr`); the full name wins."""

    metrics: dict[str, CheckTolerance] = Field(
        default_factory=dict, description="tolerance per metric name; a metric the registry "
        "does not score is gated only when listed here")
    default: CheckTolerance = Field(
        default_factory=lambda: CheckTolerance(abs=0.0),
        description="tolerance of every other gated metric (default: no change for the worse)")
    ignore: list[str] = Field(default_factory=list, description="full or registered metric "
                              "names the gate leaves out")


GDDCM_TIME_KEYS = ("t_s", "t_r", "t_end", "dt_min", "dt_max")
# Default T_s as a noise level sigma_t / alpha_t of Eq. 8, so that it means the same in every
# variant. In experiments/gddcm_Ts.yaml it is the best level on the latent rectified flow and
# the second best on the latent DDPM (LPIPS 0.0363; 0.0357 at 0.5).
DEFAULT_NOISE_S = 1 / 3


class GDDCMConfig(Section):
    """The gDDCM tokenizer's settings (seed 002 Sec. 3-4), validated strictly.

    Times are in the model's own units (a step index 0..T-1 for DDPM, t in [0, 1] for
    rectified flow). What can be checked without the model is checked on construction; the
    times are checked against the model's range by validating with context {"t_min",
    "t_max", "discrete", "noise_max"} (harness.tokenizer.times.for_process), each error
    naming its key.
    """

    p: float = Field(0.0, ge=0, lt=1, description="back-trace parameter; 0: fixed point "
                     "(Algorithm 2), 0.5 in discrete time: DDCM")
    K: int = Field(1024, gt=0, description="codebook size per step (tokens of log2 K bits)")
    N: int = Field(300, gt=0, description="number of tokenization steps")
    P: int = Field(50, gt=0, description="step-size intervals of Algorithm 2 (Eq. 9)")
    grid: int = Field(1, ge=1, description="g: one token per cell of a g x g grid per step")
    init: int = Field(1, ge=1, le=4, description="1 codebook projection (Eq. 15), 2 noise, "
                      "3 forward marginal of a reference sample, 4 zeros")
    seed: int = Field(0, ge=0, description="seed of the codebooks and of the init noise")
    t_s: float | None = Field(None, description="Algorithm 2's tokenization time T_s in "
                              "the model's time units (default: from noise_s)")
    noise_s: float | None = Field(None, gt=0, description="T_s as a noise level: the time "
                                  "at which sigma_t / alpha_t of Eq. 8 equals this, the "
                                  f"same in every variant (default {DEFAULT_NOISE_S:.3g} "
                                  "when t_s is unset)")
    t_r: float | None = Field(None, description="Algorithm 1's start T_r (default: T)")
    t_end: float | None = Field(None, description="Algorithm 1's end before plain sampling "
                                "(default: the clean end)")
    dt_min: float | None = Field(None, gt=0, description="smallest step of Eq. 9 (default "
                                 "T_s / 100; discrete time: 1)")
    dt_max: float | None = Field(None, gt=0, description="largest step of Eq. 9 (default T_s; "
                                 "discrete time: dt_min + P, Eq. 12)")
    sigma_max: float = Field(80.0, gt=0, description="sigma_max of Eq. 10")
    rho: float = Field(7.0, gt=0, description="rho of Eq. 10")
    final_steps: int = Field(20, ge=1, description="ODE steps (Eq. 18) from the last "
                             "tokenization time to the data")
    batch_size: int = Field(128, ge=1, description="images per batch, which share each "
                            "step's codebook; part of the token file")

    @field_validator(*GDDCM_TIME_KEYS)
    @classmethod
    def _in_model_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        context = info.context or {}
        if value is None or "t_max" not in context:
            return value
        lo, hi = context["t_min"], context["t_max"]
        if info.field_name in ("dt_min", "dt_max"):
            if value > hi - lo:
                raise ValueError(f"step {value:g} exceeds the model's time range {hi - lo:g}")
        elif not lo <= value <= hi:
            raise ValueError(f"must lie in the model's time range [{lo:g}, {hi:g}], "
                             f"got {value:g}")
        if context.get("discrete") and value != int(value):
            raise ValueError(f"the model has discrete timesteps; got {value:g}")
        return value

    @field_validator("noise_s")
    @classmethod
    def _noise_in_model_range(cls, value: float | None, info: ValidationInfo
                              ) -> float | None:
        highest = (info.context or {}).get("noise_max")
        if value is not None and highest is not None and value > highest:
            raise ValueError(f"must not exceed the model's largest noise level sigma/alpha "
                             f"{highest:.4g}, got {value:g}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> GDDCMConfig:
        if self.t_s is not None and self.noise_s is not None:
            raise ValueError("give T_s as t_s or as noise_s, not both")
        if self.dt_min is not None and self.dt_max is not None and self.dt_min > self.dt_max:
            raise ValueError("dt_min must not exceed dt_max")
        if self.t_r is not None and self.t_end is not None and self.t_end >= self.t_r:
            raise ValueError("t_end must be below t_r")
        if self.K > 2**31 - 1:
            raise ValueError("K must fit in int32")
        return self

    @classmethod
    def load(cls, data: dict[str, Any], file: str | Path | None = None,
             context: dict[str, Any] | None = None, prefix: str = "gddcm") -> GDDCMConfig:
        """Validate `data`, raising ConfigError that names file and `prefix.key`."""
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as error:
            raised = validation_error(Path(file) if file else Path("<command line>"), error)
            raise ConfigError(file, f"{prefix}.{raised.key}" if raised.key else prefix,
                              raised.message) from None

    def digest(self) -> str:
        """Hash of the settings that decide the tokens (stored in the token file)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class TrialConfig(Section):
    """One fully resolved trial: no sweep specs left, one seed."""

    name: str
    dataset: str
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    sample: SampleConfig = SampleConfig()
    eval: EvalConfig = EvalConfig()
    gddcm: GDDCMConfig | None = Field(
        None, description="tokenize the eval images with the trained stage 2 (gDDCM, seed 002) "
        "instead of sampling")
    seed: int = 0

    @field_validator("sample")
    @classmethod
    def _sampler_fits_process(cls, sample: SampleConfig, info: ValidationInfo) -> SampleConfig:
        """Rectified flow samples with the deterministic Euler ODE on S equal steps, which is
        DDIM with eta = 0 on its marginal; the other samplers (the diffusers zoo included)
        run on the ddpm process's betas and take S <= T steps."""
        stage2 = info.data.get("stage2")
        if stage2 is None:
            return sample
        if stage2.process == "rectified_flow" and sample.sampler not in FLOW_SAMPLERS:
            raise ValueError(f"sample.sampler {sample.sampler} runs on the ddpm process's "
                             "betas; rectified_flow samples with the Euler ODE: use "
                             "sample.sampler ddim (S = ddim_steps) with eta 0")
        if stage2.process == "rectified_flow" and sample.eta != 0:
            raise ValueError("rectified_flow samples with the Euler ODE: use sampler ddim "
                             "(S = ddim_steps) with eta 0")
        if stage2.process == "rectified_flow" and sample.timestep_spacing != "linspace":
            raise ValueError("rectified_flow's Euler ODE takes S equal steps of t: use "
                             "sample.timestep_spacing linspace")
        if sample.guidance_scale is not None and not stage2.conditional:
            raise ValueError("guidance_scale needs a conditional model: set "
                             "stage2.conditioning to class or cross_attention")
        if (stage2.process == "ddpm" and sample.sampler != "ddpm" and sample.nfe is None
                and sample.ddim_steps > stage2.T):
            raise ValueError(f"ddim_steps={sample.ddim_steps} exceeds stage2.T={stage2.T}: "
                             f"{sample.sampler} takes S of the T steps")
        return sample


class ExperimentFile(Section):
    """Top level of an experiment YAML, checked for keys before sweep expansion."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    dataset: str
    stage1: dict[str, Any] = Field(default_factory=dict)
    stage2: dict[str, Any] = Field(default_factory=dict)
    sample: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)
    gddcm: dict[str, Any] | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    num_samples: int = Field(1, ge=1, description="draws of the choice/uniform/loguniform leaves")
    sweep_seed: int = Field(0, description="seeds the random draws, so a sweep is reproducible")
    resources: ResourcesConfig = ResourcesConfig()
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    report: ReportConfig = ReportConfig()
    check: CheckConfig = CheckConfig()


class Experiment(BaseModel):
    """A loaded experiment: the validated file plus where it came from."""

    model_config = ConfigDict(frozen=True)

    path: Path
    raw: dict[str, Any]  # after profiles and overrides, with sweep specs still in place
    spec: ExperimentFile
    dataset_path: Path | None  # None only when loaded with require_dataset=False
    profiles: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return base with override merged in; nested dicts merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not is_sweep_spec(
                value):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def is_sweep_spec(value: Any) -> bool:
    return isinstance(value, dict) and any(key in SWEEP_KEYS for key in value)


def apply_override(raw: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one `--set a.b.c=value`; the value is parsed as YAML (`{sweep: [1, 2]}` works)."""
    if "=" not in assignment:
        raise ConfigError(None, f"--set {assignment}", "expected KEY.PATH=VALUE")
    key_path, text = assignment.split("=", 1)
    keys = key_path.strip().split(".")
    if not all(keys):
        raise ConfigError(None, f"--set {assignment}", "empty key in the dotted path")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(None, f"--set {key_path}", f"value is not valid YAML: {error}") from None
    patch: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        patch = {key: patch}
    return deep_merge(raw, patch)


MAX_YAML_NODES = 100_000  # an experiment has hundreds; aliases can make billions ("YAML bomb")


def _expanded_size_exceeds(data: Any, limit: int) -> bool:
    """Whether `data`, with every alias expanded, has more than `limit` nodes (stops there)."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(path, "", "file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(path, "", f"not valid YAML: {error}") from None
    if _expanded_size_exceeds(data, MAX_YAML_NODES):
        raise ConfigError(path, "", f"expands to more than {MAX_YAML_NODES} values (nested "
                          "aliases?); an experiment needs far fewer")
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping at the top level, got "
                                    f"{type(data).__name__}")
    return data


def validation_error(path: Path, error: ValidationError, overrides: tuple[str, ...] = ()
                     ) -> ConfigError:
    """Turn pydantic's error list into one ConfigError naming every bad key path."""
    set_keys = [assignment.split("=", 1)[0].strip() for assignment in overrides]
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "value_error":
            message = item["msg"].removeprefix("Value error, ")
        elif item["type"] == "missing":
            message = item["msg"]
        else:
            message = f"{item['msg']} (got {item.get('input')!r})"
        if any(key == k or key.startswith(k + ".") for k in set_keys):
            message += " [from --set]"
        problems.append((key, message))
    key, message = problems[0]
    if len(problems) > 1:
        message += "".join(f"\n  also {k}: {m}" for k, m in problems[1:])
    return ConfigError(path, key, message)


def resolve_dataset(experiment_path: Path, dataset: str) -> Path:
    """Find a manifest: absolute, else relative to the cwd, else to the experiment's folders."""
    candidate = Path(dataset).expanduser()
    if candidate.is_absolute():
        searched = [candidate]
    else:
        searched = [Path.cwd() / candidate]
        searched += [folder / candidate for folder in experiment_path.resolve().parents]
    for path in searched:
        if path.is_file():
            return path.resolve()
    raise ConfigError(experiment_path, "dataset",
                      f"manifest {dataset!r} not found (looked in the working directory and "
                      f"the folders above {experiment_path})")


def load_experiment(path: str | Path, profiles: list[str] | tuple[str, ...] = (),
                    overrides: list[str] | tuple[str, ...] = (), require_dataset: bool = True
                    ) -> Experiment:
    """Read an experiment YAML, deep-merge the named profiles, apply --set, validate keys.

    `require_dataset=False` is for commands that only read results (reports): a missing
    manifest then leaves `dataset_path` None instead of raising.
    """
    path = Path(path)
    raw = read_yaml(path)
    available = raw.get("profiles") or {}
    if not isinstance(available, dict):
        raise ConfigError(path, "profiles", "expected a mapping of profile name to overrides")
    for name in profiles:
        if name not in available:
            names = ", ".join(sorted(available)) or "none defined"
            raise ConfigError(path, f"profiles.{name}", f"no such profile (available: {names})")
        if not isinstance(available[name], dict):
            raise ConfigError(path, f"profiles.{name}", "expected a mapping of overrides")
        raw = deep_merge(raw, available[name])
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    try:
        spec = ExperimentFile.model_validate(raw)
    except ValidationError as error:
        raise validation_error(path, error, tuple(overrides)) from None
    try:
        dataset_path: Path | None = resolve_dataset(path, spec.dataset)
    except ConfigError:
        if require_dataset:
            raise
        dataset_path = None
    return Experiment(path=path, raw=raw, spec=spec, dataset_path=dataset_path,
                      profiles=tuple(profiles), overrides=tuple(overrides))

