"""encode / decode / tokenize_and_reconstruct: images <-> token files through a model.

Both directions run the same batches (cfg.batch_size, in order) through the same
`Tokenizer.run` loop with deterministic algorithms on, so `decode(model, encode(...))`
rebuilds the encoder's reconstruction bit for bit (same model weights, same torch build
and thread count, same device). Both run on the model's device (`TokenizerModel.device`);
reconstructions come back there, token files hold CPU arrays.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import torch

from harness.config import GDDCMConfig
from harness.errors import ConfigError, HarnessError
from harness.tokenizer.algorithms import ReplayTokens, SelectTokens, Tokenizer
from harness.tokenizer.codebook import block_seed
from harness.tokenizer.inits import init_tokens, initial_state
from harness.tokenizer.model import TokenizerModel
from harness.tokenizer.times import for_process, resolve_times
from harness.tokenizer.timesteps import descent_times
from harness.tokenizer.tokens import FORMAT, TokenFile

REFERENCE_STEP = -3  # generator stream of init strategy 3's reference draws


@contextmanager
def deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def make_tokenizer(model: TokenizerModel, cfg: GDDCMConfig) -> Tokenizer:
    """The tokenizer for `model`, with cfg checked against the model (errors name the key)."""
    cfg = for_process(cfg, model.process)
    _, H, W = model.data_shape
    if H % cfg.grid or W % cfg.grid:
        raise ConfigError(None, "gddcm.grid", f"{cfg.grid} does not divide the model's "
                          f"{H}x{W} data grid")
    if cfg.init == 3 and model.reference_data is None:
        raise ConfigError(None, "gddcm.init", "strategy 3 needs reference data on the model "
                          "(TokenizerModel.reference_data)")
    times = resolve_times(cfg, model.process)
    start, key = (times.t_s, "gddcm.t_s") if cfg.p == 0 else (times.t_r, "gddcm.t_r")
    if model.prediction == "eps" and model.process.alpha(start) == 0:
        raise ConfigError(None, key, f"an eps-prediction model gives no x0 where alpha(t) = 0 "
                          f"(t = {start:g}, pure noise); start earlier")
    if cfg.p != 0:
        try:
            descent_times(times.t_r, times.t_end, cfg.N, model.process.discrete)
        except ValueError as error:
            raise ConfigError(None, "gddcm.N", str(error)) from None
    return Tokenizer(model.denoiser, model.process, model.prediction, cfg, times)


def _data(model: TokenizerModel, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images through the model's conversion; a tensor is already model space."""
    data = images if isinstance(images, torch.Tensor) else model.to_data(images)
    return data.float().to(model.device)


def _references(model: TokenizerModel, cfg: GDDCMConfig, count: int) -> torch.Tensor:
    data = model.reference_data
    assert data is not None
    generator = torch.Generator().manual_seed(block_seed(cfg.seed, REFERENCE_STEP, 0))
    picks = torch.randint(0, len(data), (count,), generator=generator)
    return data[picks.to(data.device)].float().to(model.device)


def _process_meta(model: TokenizerModel) -> dict[str, object]:
    process = model.process
    return {"name": process.name, "T": process.T, "prediction": model.prediction,
            "t_min": process.t_min, "t_max": process.t_max, "discrete": process.discrete}


def encode_with_reconstruction(model: TokenizerModel, images: np.ndarray | torch.Tensor,
                               cfg: GDDCMConfig) -> tuple[TokenFile, torch.Tensor]:
    """Tokenize `images`; also returns the reconstruction (model space) the tokens decode to."""
    tokenizer = make_tokenizer(model, cfg)
    cfg = tokenizer.config
    device = model.device
    data = _data(model, images)
    references = _references(model, cfg, len(data)) if cfg.init == 3 else None
    indices, inits, outputs = [], [], []
    with deterministic():
        for first in range(0, len(data), cfg.batch_size):
            x = data[first:first + cfg.batch_size]
            reference = None if references is None else references[first:first + len(x)]
            init = init_tokens(cfg.init, x, cfg.seed, cfg.K, cfg.grid)
            start = initial_state(cfg.init, model.process, tokenizer.start_time(),
                                  tuple(x.shape), cfg.seed, cfg.K, first, init, reference,
                                  device)
            chooser = SelectTokens(x, cfg.seed, cfg.K, cfg.grid)
            outputs.append(tokenizer.run(start, chooser))
            indices.append(torch.stack(chooser.tokens, dim=1).cpu() if chooser.tokens else
                           torch.zeros(len(x), 0, cfg.grid**2, dtype=torch.int32))
            if init is not None:
                inits.append(init.to(torch.int32).cpu())
    meta = {"format": FORMAT, "config": cfg.model_dump(mode="json"),
            "config_hash": cfg.digest(), "model_ref": model.reference,
            "process": _process_meta(model), "data_shape": list(model.data_shape),
            "times": asdict(tokenizer.times), "count": len(data),
            "tokens_per_cell": tokenizer.token_count()}
    tokens = TokenFile(torch.cat(indices).numpy(), meta,
                       torch.cat(inits).numpy() if inits else None,
                       references.cpu().numpy() if references is not None else None)
    return tokens, torch.cat(outputs)


def encode(model: TokenizerModel, images: np.ndarray | torch.Tensor, cfg: GDDCMConfig
           ) -> TokenFile:
    return encode_with_reconstruction(model, images, cfg)[0]


def decode(model: TokenizerModel, tokens: TokenFile) -> torch.Tensor:
    """The reconstruction (model space, on the model's device) from a token file alone, bit
    for bit."""
    meta = tokens.meta
    if meta["process"] != _process_meta(model) or meta["data_shape"] != list(
            model.data_shape):
        raise HarnessError(f"token file was made with {meta['process']} on data "
                           f"{meta['data_shape']}, not this model ({_process_meta(model)}, "
                           f"{list(model.data_shape)})")
    tokenizer = make_tokenizer(model, GDDCMConfig.load(meta["config"]))
    if asdict(tokenizer.times) != meta["times"]:
        raise HarnessError(f"token file was made at times {meta['times']}; its config "
                           f"resolves to {asdict(tokenizer.times)} here")
    cfg = tokenizer.config
    device = model.device
    shape = tuple(model.data_shape)
    indices = torch.from_numpy(tokens.indices)
    outputs = []
    with deterministic():
        for first in range(0, meta["count"], cfg.batch_size):
            rows = slice(first, min(first + cfg.batch_size, meta["count"]))
            count = rows.stop - rows.start
            init = (torch.from_numpy(tokens.init_indices[rows]).long()
                    if tokens.init_indices is not None else None)
            reference = (torch.from_numpy(tokens.init_reference[rows])
                         if tokens.init_reference is not None else None)
            start = initial_state(cfg.init, model.process, tokenizer.start_time(),
                                  (count, *shape), cfg.seed, cfg.K, first, init, reference,
                                  device)
            outputs.append(tokenizer.run(start, ReplayTokens(indices[rows], cfg.seed, cfg.K)))
    return torch.cat(outputs)


def tokenize_and_reconstruct(model: TokenizerModel, images: np.ndarray, cfg: GDDCMConfig
                             ) -> tuple[np.ndarray, TokenFile, float]:
    """(uint8 reconstructions, tokens, seconds) for a trial; the seconds cover encoding
    (which yields the reconstruction) and the conversion back to images.
    `tokens.bits_per_image` = tokens per image (every grid cell, init token included) * log2 K.
    """
    start = time.perf_counter()
    tokens, reconstruction = encode_with_reconstruction(model, images, cfg)
    pictures = model.to_images(reconstruction)
    return pictures, tokens, time.perf_counter() - start
