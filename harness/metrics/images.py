"""Image sets for the metrics command: a folder of PNG/JPEG files, or a manifest's eval split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data import IMAGE_SUFFIXES, load_dataset
from harness.errors import DataError
from harness.metrics.sets import ReferenceKey

MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8 NHWC RGB
    names: list[str]  # file names (pairing key), or eval-split indices for a manifest
    key: ReferenceKey | None  # for the reference-statistics cache; None: hash the array
    label: str


def folder_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images (or a manifest .yaml)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return files


def load_folder(folder: Path) -> ImageSet:
    """Every image of the folder (sorted by name), as RGB; all must share one size."""
    arrays, names = [], []
    for file in folder_files(folder):
        try:
            with Image.open(file) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except OSError as error:
            raise DataError(f"{file}: unreadable image ({error})") from error
        if arrays and array.shape != arrays[0].shape:
            raise DataError(f"{file}: size {array.shape[1]}x{array.shape[0]} differs from "
                            f"{names[0]} ({arrays[0].shape[1]}x{arrays[0].shape[0]})")
        arrays.append(array)
        names.append(file.name)
    return ImageSet(np.stack(arrays), names, None, str(folder))


def load_images(path: Path) -> ImageSet:
    """A folder, or a data manifest (its eval split, keyed by the dataset's content hash)."""
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        dataset = load_dataset(path)
        images = dataset.eval
        return ImageSet(images, [str(i) for i in range(len(images))],
                        ReferenceKey(dataset.content_hash, "eval", len(images)),
                        f"{path} (eval split)")
    return load_folder(path)


def take(images: ImageSet, count: int | None) -> ImageSet:
    """The first `count` images (all when None)."""
    if count is None or count >= len(images.images):
        return images
    key = images.key
    if key is not None:
        key = ReferenceKey(key.dataset_hash, key.split, count)
    return ImageSet(images.images[:count], images.names[:count], key, images.label)


def paired(real: ImageSet, fake: ImageSet) -> None:
    """Check that fake[i] is the reconstruction of real[i]: same count, shape, file names."""
    if real.images.shape != fake.images.shape:
        raise DataError(f"--pairs needs sets of one shape: {real.label} is "
                        f"{real.images.shape}, {fake.label} is {fake.images.shape}")
    if real.key is None and real.names != fake.names:
        mismatch = next(a for a, b in zip(real.names, fake.names, strict=True) if a != b)
        raise DataError(f"--pairs pairs files by name: {mismatch} in {real.label} has no "
                        f"counterpart of that name in {fake.label}")
