"""`harness tokenize encode | decode`: images -> token file -> reconstruction."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from harness.errors import ConfigError, HarnessError

if TYPE_CHECKING:
    from harness.tokenizer.model import TokenizerModel


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `tokenize` on the `harness` command's subparsers."""
    tokenize = subparsers.add_parser(
        "tokenize", help="gDDCM: turn images into tokens with a trained diffusion model and back",
        description="gDDCM (seed 002): encode images into per-step codebook indices with a "
        "trained stage-2 model, and decode a token file back into the reconstruction, bit "
        "for bit.")
    actions = tokenize.add_subparsers(dest="tokenize_command", required=True, metavar="ACTION")

    encode = actions.add_parser("encode", help="images -> token file (.npz)")
    encode.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="a stage-2 cache entry (a folder with stage2_model.json)")
    encode.add_argument("--images", type=Path, required=True, metavar="FILE",
                        help="uint8 NHWC images: .npy, or .npz with an `images` array")
    encode.add_argument("--out", type=Path, required=True, metavar="NPZ",
                        help="token file to write, e.g. tokens.npz")
    encode.add_argument("--config", type=Path, metavar="YAML",
                        help="GDDCMConfig keys (p, K, N, P, grid, init, seed, t_s or "
                        "noise_s, t_r, ...)")
    encode.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="set one GDDCMConfig key (value is YAML); "
                        "repeatable, applied after --config")
    encode.set_defaults(handler=cmd_encode)

    decode = actions.add_parser("decode", help="token file -> reconstruction (.npz)")
    decode.add_argument("tokens", type=Path, help="token file written by `tokenize encode`")
    decode.add_argument("--out", type=Path, required=True, metavar="NPZ",
                        help="where to write `images` (uint8 NHWC) and `data` (model space)")
    decode.add_argument("--model", type=Path, metavar="DIR",
                        help="model folder (default: the model reference in the token file)")
    decode.set_defaults(handler=cmd_decode)


def read_config(path: Path | None, overrides: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(path, "", "expected a mapping of GDDCMConfig keys")
        data |= loaded
    for assignment in overrides:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise ConfigError(None, assignment, "expected KEY=VALUE")
        data[key.strip()] = yaml.safe_load(value)
    return data


def read_images(path: Path) -> np.ndarray:
    if not path.is_file():
        raise HarnessError(f"{path}: no such file")
    if path.suffix == ".npz":
        with np.load(path) as archive:
            if "images" not in archive.files:
                raise HarnessError(f"{path}: no `images` array (has {archive.files})")
            images = archive["images"]
    else:
        images = np.load(path)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise HarnessError(f"{path}: expected uint8 NHWC images, got {images.dtype} "
                           f"{images.shape}")
    return images


def load_model(folder: str | Path) -> TokenizerModel:
    """The tokenizer model of a stage-2 cache entry (its card names the stage-1 entry)."""
    from harness.stages.stage2 import load_entry
    from harness.stages.tokenize import tokenizer_model

    stage1, stage2 = load_entry(folder)
    return tokenizer_model(stage1, stage2)


def cmd_encode(args: argparse.Namespace) -> int:
    from harness.config import GDDCMConfig
    from harness.tokenizer.api import encode_with_reconstruction

    cfg = GDDCMConfig.load(read_config(args.config, args.overrides), args.config)
    model = load_model(args.model)
    tokens, _ = encode_with_reconstruction(model, read_images(args.images), cfg)
    tokens.save(args.out)
    print(f"{args.out}: {tokens.meta['count']} images, {tokens.tokens_per_image} tokens per "
          f"image, {tokens.bits_per_image:g} bits per image (config {tokens.meta['config_hash']})")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from harness.tokenizer.api import decode
    from harness.tokenizer.tokens import TokenFile

    tokens = TokenFile.load(args.tokens)
    model = load_model(args.model or tokens.meta["model_ref"])
    data = decode(model, tokens)
    with args.out.open("wb") as handle:
        np.savez(handle, images=model.to_images(data), data=data.cpu().numpy())
    print(f"{args.out}: {len(data)} reconstructions")
    return 0
