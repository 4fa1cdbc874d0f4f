"""Image arrays: uint8 conversion, resizing the way the sources do it, and image grids."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
RESIZE_CHUNK = 1024  # images per resize() call in center_crop_resize
CHUNK_BYTES = 64 << 20  # about how much of a split a chunked source holds at once


def chunk_length(side: int) -> int:
    """How many side x side RGB uint8 images fit in CHUNK_BYTES (at least one)."""
    return max(1, CHUNK_BYTES // (side * side * 3))


def rechunk(batches: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The images of `batches`, in order, regrouped into chunks of `size` (the last shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for batch in batches:
        while len(batch):
            part, batch = batch[: size - held], batch[size - held :]
            pending.append(part)
            held += len(part)
            if held == size:
                yield np.concatenate(pending)
                pending, held = [], 0
    if held:
        yield np.concatenate(pending)


def as_uint8(images: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (or uint8) to uint8 by rounding to the nearest level."""
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=512)
def _resize_matrix(size: int, side: int) -> np.ndarray:
    """skimage.transform.resize along one axis, from `size` to `side` samples, as a matrix."""
    from skimage.transform import resize  # imported here: skimage is slow to import

    matrix = resize(np.eye(size), (side, size), order=1, anti_aliasing=size > side)
    matrix[np.abs(matrix) < 1e-9] = 0.0  # Gaussian tails underflow to denormals: slow matmuls
    return matrix.astype(np.float32)


def resize(images: np.ndarray, side: int) -> np.ndarray:
    """Resize an N x H x W x C batch (uint8 or floats in [0, 1]) to side x side, floats in [0, 1].

    Same result as skimage.transform.resize(order=1, anti_aliasing when shrinking) per image, to
    float precision: its Gaussian pre-filter and bilinear interpolation are separable linear
    maps, so one matrix per axis reproduces them. Two large matrix products per batch are
    ~20x faster than one resize() call per image.
    """
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    n, h, w, c = images.shape
    if (h, w) == (side, side):
        return images
    rows, cols = _resize_matrix(h, side), _resize_matrix(w, side)
    x = images.transpose(0, 3, 1, 2).reshape(n * c * h, w) @ cols.T
    x = x.reshape(n * c, h, side).transpose(1, 0, 2).reshape(h, n * c * side)
    return (rows @ x).reshape(side, n, c, side).transpose(1, 0, 3, 2)


def center_crop_resize(
    images: np.ndarray, resolution: int, chunk: int = RESIZE_CHUNK
) -> np.ndarray:
    """Center-crop and resize a uint8 NHWC batch to resolution x resolution.

    The batch is resized `chunk` images at a time; a source that calls this on parts of a
    split cuts them at multiples of RESIZE_CHUNK, so its pixels match one call on the whole.
    """
    n, h, w = images.shape[:3]
    if (h, w) == (resolution, resolution):
        return images
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = images[:, top : top + s, left : left + s]
    out = np.empty((n, resolution, resolution, 3), np.uint8)
    for start in range(0, n, chunk):
        out[start : start + chunk] = as_uint8(resize(square[start : start + chunk], resolution))
    return out


def image_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile N x H x W x C images (uint8, or floats in [0, 1]) into one uint8 grid.

    `nrow` is the number of images per row (torchvision's convention), default ceil(sqrt(N));
    `padding` black pixels separate the tiles and frame the grid.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected a non-empty N x H x W x C batch, got shape {images.shape}")
    images = as_uint8(images)
    n, h, w, c = images.shape
    per_row = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / per_row)
    grid = np.zeros(
        (rows * (h + padding) + padding, per_row * (w + padding) + padding, c), np.uint8
    )
    for i, image in enumerate(images):
        r, q = divmod(i, per_row)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y : y + h, x : x + w] = image
    return grid


def save_grid(
    images: np.ndarray, path: str | Path, nrow: int | None = None, padding: int = 2
) -> Path:
    """Write `image_grid(images, nrow, padding)` as a PNG; returns the path."""
    grid = image_grid(images, nrow, padding)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path, format="PNG")
    return path
