"""Source `image_folder`: PNG/JPEG files under a local folder."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.images import IMAGE_SUFFIXES
from harness.data.manifest import (
    Manifest,
    Split,
    StrictModel,
    data_error,
    data_path,
    register_source,
    resolve_path,
    source_options,
    take,
)


class ImageFolderOptions(StrictModel):
    """Options of `image_folder`."""

    eval_path: str | None = None


def _image_files(folder: Path, manifest: Manifest, mpath: Path) -> list[Path]:
    if not folder.is_dir():
        raise data_error(folder, "image folder not found", manifest, mpath)
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _read_image(file: Path, res: int, manifest: Manifest, mpath: Path) -> np.ndarray:
    try:
        with Image.open(file) as image:
            image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise data_error(file, f"unreadable image ({exc})", manifest, mpath) from None
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s))
    # Pillow rather than skimage here: folders hold up to ~10^5 large images, and Pillow's
    # anti-aliased bicubic is ~30x faster than skimage.transform.resize at 1024 -> 256.
    if s != res:
        image = image.resize((res, res), Image.Resampling.BICUBIC)
    return np.asarray(image, np.uint8)


def _read_folder(folder: Path, count: int, key: str, manifest: Manifest, mpath: Path) -> np.ndarray:
    files = _image_files(folder, manifest, mpath)
    files = take(files, count, key, folder, manifest, mpath, noun="PNG/JPEG images")
    res = manifest.resolution
    out = np.empty((count, res, res, 3), np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, image in enumerate(pool.map(lambda f: _read_image(f, res, manifest, mpath), files)):
            out[i] = image
    return out


@register_source("image_folder", options=ImageFolderOptions, needs_path=True)
def image_folder(manifest: Manifest, manifest_path: Path) -> Split:
    """PNG/JPEG files under a folder (recursive, sorted), center-cropped and resized."""
    opts: ImageFolderOptions = source_options(manifest, manifest_path)
    folder = data_path(manifest, manifest_path)
    n_train, n_eval = manifest.splits.train, manifest.splits.eval
    if opts.eval_path is None:
        both = _read_folder(
            folder, n_train + n_eval, "splits.train + splits.eval", manifest, manifest_path
        )
        return both[:n_train], both[n_train:]
    train = _read_folder(folder, n_train, "splits.train", manifest, manifest_path)
    eval_folder = resolve_path(opts.eval_path, manifest_path)
    eval_ = _read_folder(eval_folder, n_eval, "splits.eval", manifest, manifest_path)
    return train, eval_
