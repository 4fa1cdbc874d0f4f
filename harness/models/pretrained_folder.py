"""What a diffusers `save_pretrained` folder of an autoencoder says, read without torch.

`stage1: {kind: pretrained, path: DIR}` is validated against it (the class from config.json's
`_class_name`, f and the latent channels) and the stage-1 cache key holds a digest of its
config and weight files, so that a dry run checks a folder without importing a model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_CLASSES = ("AutoencoderKL", "VQModel")
CONFIG = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")  # and a sharded checkpoint's *.index.json
_DIGEST_CHUNK = 1 << 20
_digests: dict[tuple[tuple[str, int, int], ...], str] = {}  # by the files' names, sizes, mtimes


@dataclass(frozen=True)
class PretrainedFolder:
    path: Path  # absolute
    class_name: str  # one of SUPPORTED_CLASSES
    f: int  # 2^(len(block_out_channels) - 1): every encoder block but the last halves H, W
    latent_channels: int  # channels of E(x): VQModel's vq_embed_dim when it has one

    def weight_files(self) -> list[Path]:
        return sorted(file for file in self.path.iterdir() if file.is_file() and (
            file.name.endswith(WEIGHT_SUFFIXES) or file.name.endswith(".index.json")))


def read_folder(path: str | Path) -> PretrainedFolder:
    """The folder's facts; a ValueError saying what is wrong with it (the caller names the key).

    A relative path is taken from the working directory."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"no folder {str(path)!r} (looked at {folder}); give the folder an "
                         "AutoencoderKL or VQModel was saved to with save_pretrained")
    if not (folder / CONFIG).is_file():
        raise ValueError(f"{folder} has no {CONFIG}; save_pretrained writes one")
    try:
        config = json.loads((folder / CONFIG).read_text())
        class_name = config.get("_class_name")
        if class_name not in SUPPORTED_CLASSES:
            raise ValueError(f"{folder / CONFIG} is a {class_name!r}; supported: "
                             f"{', '.join(SUPPORTED_CLASSES)}")
        levels = len(config.get("block_out_channels", [64]))  # diffusers' defaults
        channels = config.get("latent_channels", 4 if class_name == "AutoencoderKL" else 3)
        if class_name == "VQModel" and config.get("vq_embed_dim"):
            channels = config["vq_embed_dim"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{folder / CONFIG} is not a diffusers autoencoder config: "
                         f"{type(error).__name__}: {error}") from None
    result = PretrainedFolder(folder, class_name, 2 ** (levels - 1), int(channels))
    if not result.weight_files():
        raise ValueError(f"{folder} has no weight files (*.safetensors or *.bin)")
    return result


def folder_digest(path: str | Path) -> str:
    """sha256 over the config and weight files of a folder: their names and contents (read
    once per process while their sizes and mtimes stay the same: a key is asked for often)."""
    folder = read_folder(path)
    files = [folder.path / CONFIG, *folder.weight_files()]
    stamp = tuple((str(file), file.stat().st_size, file.stat().st_mtime_ns) for file in files)
    if stamp not in _digests:
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
            with file.open("rb") as stream:
                while chunk := stream.read(_DIGEST_CHUNK):
                    digest.update(chunk)
        _digests[stamp] = digest.hexdigest()
    return _digests[stamp]
