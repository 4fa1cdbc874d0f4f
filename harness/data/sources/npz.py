"""Source `npz`: a local .npz file holding arrays `train` and `eval`."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.images import as_uint8, center_crop_resize
from harness.data.manifest import (
    Manifest,
    Split,
    data_error,
    data_path,
    register_source,
    sha256_file,
    take,
)


def _split(
    arrays: Any, key: str, count: int, file: Path, manifest: Manifest, mpath: Path
) -> np.ndarray:
    if key not in arrays.files:
        problem = f"has no array named {key!r} (found {arrays.files})"
        raise data_error(file, problem, manifest, mpath)
    images = arrays[key]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise data_error(
            file, f"array {key!r} is {images.shape}, expected N x H x W x 3", manifest, mpath
        )
    if images.dtype != np.uint8:
        if images.dtype.kind != "f" or (images.size and (images.min() < 0 or images.max() > 1)):
            raise data_error(
                file,
                f"array {key!r} is {images.dtype}; expected uint8 or floats in [0, 1]",
                manifest,
                mpath,
            )
        images = as_uint8(images)
    images = take(images, count, f"splits.{key}", file, manifest, mpath)
    return center_crop_resize(images, manifest.resolution)


@register_source("npz", needs_path=True, single_file=True)
def npz(manifest: Manifest, manifest_path: Path) -> Split:
    """A .npz file holding arrays `train` and `eval` (uint8 NHWC, or floats in [0, 1])."""
    file = data_path(manifest, manifest_path)
    if not file.is_file():
        raise data_error(file, "file not found", manifest, manifest_path)
    if manifest.sha256 is not None:
        actual = sha256_file(file)
        if actual != manifest.sha256:
            problem = f"sha256 is {actual}, the manifest expects {manifest.sha256}"
            raise data_error(file, problem, manifest, manifest_path)
    splits = manifest.splits
    try:
        with np.load(file, allow_pickle=False) as arrays:
            train = _split(arrays, "train", splits.train, file, manifest, manifest_path)
            eval_ = _split(arrays, "eval", splits.eval, file, manifest, manifest_path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        problem = f"not a readable .npz file ({exc})"
        raise data_error(file, problem, manifest, manifest_path) from None
    return train, eval_
