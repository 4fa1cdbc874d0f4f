"""Source `skimage_patches`: random crops of the photographs in scikit-image's wheel."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from harness.data.images import as_uint8, resize
from harness.data.manifest import Manifest, Split, StrictModel, register_source, source_options
from harness.errors import DataError

# Natural RGB photographs stored inside scikit-image's wheel (no download). `cat` is left out:
# it is the same picture as `chelsea`. `colorwheel` and `logo` are graphics, not photographs.
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut",
    "coffee": "coffee",
    "rocket": "rocket",
    "immunohistochemistry": "immunohistochemistry",
    "hubble_deep_field": "hubble_deep_field",
    "retina": "retina",
    "chelsea": "chelsea",
    "motorcycle": "stereo_motorcycle",
}
DEFAULT_TRAIN_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
)
DEFAULT_EVAL_PHOTOS = ("chelsea", "motorcycle")


class SkimagePatchesOptions(StrictModel):
    """Options of `skimage_patches`."""

    min_crop_frac: float = Field(0.25, gt=0.0, le=1.0)
    train_images: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRAIN_PHOTOS), min_length=1
    )
    eval_images: list[str] = Field(default_factory=lambda: list(DEFAULT_EVAL_PHOTOS), min_length=1)

    @field_validator("train_images", "eval_images")
    @classmethod
    def _known_photos(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in SKIMAGE_PHOTOS]
        if unknown:
            raise ValueError(f"unknown photograph(s) {unknown}; available: {list(SKIMAGE_PHOTOS)}")
        return names

    @model_validator(mode="after")
    def _held_out(self) -> SkimagePatchesOptions:
        shared = sorted(set(self.train_images) & set(self.eval_images))
        if shared:
            raise ValueError(f"eval photographs must be held out, but {shared} are in both lists")
        return self


@functools.cache
def _photo_level(name: str, level: int) -> np.ndarray:
    """Photograph `name` as float32 in [0, 1], halved `level` times (an anti-aliased pyramid)."""
    if level == 0:
        import skimage.data

        try:
            photo = getattr(skimage.data, SKIMAGE_PHOTOS[name])()
        except Exception as exc:  # any failure means the wheel lacks a readable file
            raise DataError(
                f"scikit-image photograph {name!r} could not be loaded from the installed "
                f"wheel ({exc}); reinstall scikit-image"
            ) from exc
        photo = photo[0] if isinstance(photo, tuple) else photo
        return photo[..., :3].astype(np.float32) / 255.0
    from skimage.transform import resize as skimage_resize

    parent = _photo_level(name, level - 1)
    shape = (max(1, round(parent.shape[0] / 2)), max(1, round(parent.shape[1] / 2)))
    return skimage_resize(parent, shape, order=1, anti_aliasing=True).astype(np.float32)


def _patches(
    names: list[str], count: int, res: int, min_frac: float, rng: np.random.Generator
) -> np.ndarray:
    """`count` random square crops (random side, position and flip) resized to res x res."""
    shapes = [_photo_level(n, 0).shape[:2] for n in names]
    which = rng.integers(0, len(names), count)
    frac = rng.uniform(min_frac, 1.0, count)
    where = rng.random((count, 2))
    flips = rng.random(count) < 0.5
    crops = []
    for i in range(count):
        h, w = shapes[which[i]]
        side = max(1, round(frac[i] * min(h, w)))
        top = int(where[i, 0] * (h - side + 1))
        left = int(where[i, 1] * (w - side + 1))
        # Crop from the pyramid level where the crop is 1-2x the output side, so resizing stays
        # cheap however large the crop is in the full photograph.
        level = max(0, math.floor(math.log2(side / res))) if side >= res else 0
        crops.append(_pyramid_crop(names[which[i]], level, top, left, side))
    out = np.empty((count, res, res, 3), np.uint8)
    sides = np.array([len(crop) for crop in crops])
    for side in np.unique(sides):
        idx = np.flatnonzero(sides == side)
        out[idx] = as_uint8(resize(np.stack([crops[i] for i in idx]), res))
    out[flips] = out[flips, :, ::-1]
    return out


def _pyramid_crop(name: str, level: int, top: int, left: int, side: int) -> np.ndarray:
    image = _photo_level(name, level)
    scale = 2**level
    s = max(1, min(round(side / scale), *image.shape[:2]))
    y = min(round(top / scale), image.shape[0] - s)
    x = min(round(left / scale), image.shape[1] - s)
    return image[y : y + s, x : x + s]


@register_source("skimage_patches", options=SkimagePatchesOptions)
def skimage_patches(manifest: Manifest, manifest_path: Path) -> Split:
    """Random crops of scikit-image's photographs; eval crops come from held-out photographs."""
    opts: SkimagePatchesOptions = source_options(manifest, manifest_path)
    res, frac = manifest.resolution, opts.min_crop_frac
    train_rng = np.random.default_rng([manifest.seed, 0])
    eval_rng = np.random.default_rng([manifest.seed, 1])
    train = _patches(opts.train_images, manifest.splits.train, res, frac, train_rng)
    eval_ = _patches(opts.eval_images, manifest.splits.eval, res, frac, eval_rng)
    return train, eval_
