"""Source `skimage_patches`: random crops of the photographs in scikit-image's wheel.

Why train and eval are regions of the same photographs (`split: regions`, the default): the
generation metrics compare samples with the eval split, so eval must come from the distribution
the model learns. With eval crops from other photographs, real train crops scored FID 329
against eval: the metric measured the distance between photographs, not the generator.

So each photograph is cut into a `grid` x `grid` grid of cells; in row r of photograph number i
(its index in `images`) the cell at column (r + i) mod grid is eval's, the others are train's:
eval holds 1/grid of every photograph, spread over its rows and columns. A crop lies inside one
cell of its split, and is resized from an anti-aliased pyramid of that cell alone, so no train
pixel reaches an eval image, not even through a resizing filter.

`split: photographs` keeps the held-out-photographs split (train and eval crops from disjoint
lists of photographs) for domain-shift studies; its crops are the same as before regions existed.

Labels: the class of a crop is its photograph. With `split: regions` the classes are `images`,
in manifest order; with `split: photographs` they are `train_images` followed by the
`eval_images` not among them (so eval classes are ones train never shows).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from harness.data.images import as_uint8, resize
from harness.data.manifest import (
    LabeledSplit,
    Manifest,
    StrictModel,
    register_source,
    source_options,
)
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
DEFAULT_EVAL_PHOTOS = ("chelsea", "motorcycle")  # held out, with `split: photographs`
MIN_CELL_SIDE = 8  # pixels: the shortest side a grid cell may have

Cell = tuple[int, int, int, int]  # top, bottom, left, right: full-resolution pixels, end excluded


class SkimagePatchesOptions(StrictModel):
    """Options of `skimage_patches`.

    `images` and `grid` belong to `split: regions`; `train_images` and `eval_images` to
    `split: photographs`. Setting an option of the other mode is an error.
    """

    split: Literal["regions", "photographs"] = "regions"
    min_crop_frac: float = Field(0.25, gt=0.0, le=1.0)
    images: list[str] = Field(default_factory=lambda: list(DEFAULT_TRAIN_PHOTOS), min_length=1)
    grid: int = Field(3, ge=2)
    train_images: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRAIN_PHOTOS), min_length=1
    )
    eval_images: list[str] = Field(default_factory=lambda: list(DEFAULT_EVAL_PHOTOS), min_length=1)

    # Field validators run only on options the manifest sets, in field order, so `split` (and
    # `images` for `grid`) are already in `info.data` when they are valid. The default grid needs
    # no size check: every photograph is at least 300 pixels on its shorter side.
    @field_validator("images", "grid", "train_images", "eval_images")
    @classmethod
    def _in_its_mode(cls, value: object, info: ValidationInfo) -> object:
        mode = "regions" if info.field_name in ("images", "grid") else "photographs"
        split = info.data.get("split")
        if split is not None and split != mode:
            raise ValueError(f"is an option of split: {mode}, but split is {split}")
        return value

    @field_validator("images", "train_images", "eval_images")
    @classmethod
    def _known_photos(cls, names: list[str], info: ValidationInfo) -> list[str]:
        unknown = [n for n in names if n not in SKIMAGE_PHOTOS]
        if unknown:
            raise ValueError(f"unknown photograph(s) {unknown}; available: {list(SKIMAGE_PHOTOS)}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if info.field_name == "images" and twice:
            # A second copy would put its eval cells where the first copy has train cells.
            raise ValueError(f"each photograph may be listed once, but {twice} are repeated")
        return names

    @field_validator("grid")
    @classmethod
    def _cells_large_enough(cls, grid: int, info: ValidationInfo) -> int:
        for name in info.data.get("images", ()):
            height, width = photo_shape(name)
            side = min(min(b - t, r - c) for t, b, c, r in grid_cells(height, width, grid))
            if side < MIN_CELL_SIDE:
                raise ValueError(
                    f"grid {grid} cuts {name} ({height}x{width}) into cells with a side of "
                    f"{side} pixels, under the minimum of {MIN_CELL_SIDE}; use a smaller grid"
                )
        return grid

    @model_validator(mode="after")
    def _held_out(self) -> SkimagePatchesOptions:
        shared = sorted(set(self.train_images) & set(self.eval_images))
        if self.split == "photographs" and shared:
            raise ValueError(f"eval photographs must be held out, but {shared} are in both lists")
        return self


@dataclass(frozen=True)
class Crop:
    """One square crop, in full-resolution pixels of its photograph, before resizing."""

    photo: str
    top: int
    left: int
    side: int
    split: str  # "train" or "eval"
    cell: Cell  # the cell it lies in: the whole photograph with `split: photographs`
    flip: bool  # mirrored horizontally after resizing


def grid_cells(height: int, width: int, grid: int) -> list[Cell]:
    """The grid x grid cells that tile a height x width photograph exactly, row by row."""
    rows = np.linspace(0, height, grid + 1).round().astype(int).tolist()
    cols = np.linspace(0, width, grid + 1).round().astype(int).tolist()
    return [(rows[r], rows[r + 1], cols[c], cols[c + 1]) for r in range(grid) for c in range(grid)]


def split_cells(index: int, height: int, width: int, grid: int) -> dict[str, list[Cell]]:
    """Photograph number `index`'s cells by split: in row r, column (r + index) mod grid is eval."""
    cells: dict[str, list[Cell]] = {"train": [], "eval": []}
    for k, cell in enumerate(grid_cells(height, width, grid)):
        row, col = divmod(k, grid)
        cells["eval" if col == (row + index) % grid else "train"].append(cell)
    return cells


def crop_boxes(options: SkimagePatchesOptions, seed: int, train: int, eval_: int) -> list[Crop]:
    """The `train` train crops, then the `eval_` eval crops; deterministic by seed.

    Each split draws from its own generator, so one split's count leaves the other's crops alone.
    """
    crops: list[Crop] = []
    for stream, (split, count) in enumerate((("train", train), ("eval", eval_))):
        rng = np.random.default_rng([seed, stream])
        crops += _draw(split, _regions(options, split), count, options.min_crop_frac, rng)
    return crops


def _regions(options: SkimagePatchesOptions, split: str) -> list[tuple[str, list[Cell]]]:
    """Per photograph that `split` draws from, the cells its crops may lie in."""
    if options.split == "photographs":
        names = options.train_images if split == "train" else options.eval_images
        return [(name, [(0, photo_shape(name)[0], 0, photo_shape(name)[1])]) for name in names]
    return [
        (name, split_cells(i, *photo_shape(name), options.grid)[split])
        for i, name in enumerate(options.images)
    ]


def _draw(
    split: str,
    regions: list[tuple[str, list[Cell]]],
    count: int,
    min_frac: float,
    rng: np.random.Generator,
) -> list[Crop]:
    """`count` crops: a photograph, a cell of it, a side, a position in the cell and a flip."""
    which = rng.integers(0, len(regions), count)
    frac = rng.uniform(min_frac, 1.0, count)
    where = rng.random((count, 2))
    flips = rng.random(count) < 0.5
    # The cell is drawn last: with one cell per photograph (`split: photographs`) the crops are
    # those of the versions before regions existed.
    cell_index = rng.integers(0, np.array([len(cells) for _, cells in regions])[which])
    crops = []
    for i in range(count):
        name, cells = regions[which[i]]
        top, bottom, left, right = cell = cells[cell_index[i]]
        height, width = bottom - top, right - left
        side = max(1, round(frac[i] * min(height, width)))
        y = top + int(where[i, 0] * (height - side + 1))
        x = left + int(where[i, 1] * (width - side + 1))
        crops.append(Crop(name, y, x, side, split, cell, bool(flips[i])))
    return crops


@functools.cache
def _photo(name: str) -> np.ndarray:
    """Photograph `name` as float32 RGB in [0, 1]."""
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


def photo_shape(name: str) -> tuple[int, int]:
    """Height and width of photograph `name` at full resolution."""
    height, width = _photo(name).shape[:2]
    return height, width


@functools.cache
def _cell_level(name: str, cell: Cell, level: int) -> np.ndarray:
    """`cell` of photograph `name`, halved `level` times: an anti-aliased pyramid of the cell."""
    if level == 0:
        top, bottom, left, right = cell
        return _photo(name)[top:bottom, left:right]
    from skimage.transform import resize as skimage_resize

    parent = _cell_level(name, cell, level - 1)
    shape = (max(1, round(parent.shape[0] / 2)), max(1, round(parent.shape[1] / 2)))
    return skimage_resize(parent, shape, order=1, anti_aliasing=True).astype(np.float32)


def _pixels(crop: Crop, res: int) -> np.ndarray:
    """The crop's pixels from the pyramid level of its cell where it is 1-2x the output side, so
    resizing stays cheap however large the crop is in the full photograph."""
    level = max(0, math.floor(math.log2(crop.side / res))) if crop.side >= res else 0
    image = _cell_level(crop.photo, crop.cell, level)
    scale = 2**level
    s = max(1, min(round(crop.side / scale), *image.shape[:2]))
    y = min(round((crop.top - crop.cell[0]) / scale), image.shape[0] - s)
    x = min(round((crop.left - crop.cell[2]) / scale), image.shape[1] - s)
    return image[y : y + s, x : x + s]


def render(crops: list[Crop], res: int) -> np.ndarray:
    """The crops resized to res x res and flipped as drawn: uint8 N x res x res x 3."""
    pixels = [_pixels(crop, res) for crop in crops]
    out = np.empty((len(crops), res, res, 3), np.uint8)
    sides = np.array([len(p) for p in pixels], int)
    for side in np.unique(sides):
        idx = np.flatnonzero(sides == side)
        out[idx] = as_uint8(resize(np.stack([pixels[i] for i in idx]), res))
    flips = np.array([crop.flip for crop in crops], bool)
    out[flips] = out[flips, :, ::-1]
    return out


def photo_classes(options: SkimagePatchesOptions) -> tuple[str, ...]:
    """The class names: the photographs the crops come from (see the module docstring)."""
    if options.split == "regions":
        return tuple(options.images)
    return tuple(dict.fromkeys([*options.train_images, *options.eval_images]))


def skimage_classes(manifest: Manifest, manifest_path: Path) -> tuple[str, ...]:
    """`photo_classes` of the manifest's options."""
    return photo_classes(source_options(manifest, manifest_path))


@register_source("skimage_patches", options=SkimagePatchesOptions, classes=skimage_classes)
def skimage_patches(manifest: Manifest, manifest_path: Path) -> LabeledSplit:
    """Random crops of scikit-image's photographs, split by regions or by photographs, labeled
    by their photograph."""
    opts: SkimagePatchesOptions = source_options(manifest, manifest_path)
    crops = crop_boxes(opts, manifest.seed, manifest.splits.train, manifest.splits.eval)
    index = {name: i for i, name in enumerate(photo_classes(opts))}
    splits = [[c for c in crops if c.split == split] for split in ("train", "eval")]
    train, eval_ = (render(part, manifest.resolution) for part in splits)
    train_labels, eval_labels = (
        np.array([index[c.photo] for c in part], np.int64) for part in splits
    )
    return train, eval_, train_labels, eval_labels
