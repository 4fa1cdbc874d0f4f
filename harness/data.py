"""Data manifests: validate them and materialize their train/eval splits as uint8 NHWC arrays."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError, DataError

Split = tuple[np.ndarray, np.ndarray]
SourceFn = Callable[["Manifest", Path], Split]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------- manifest schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Splits(_Strict):
    """How many images each split holds."""

    train: int = Field(ge=1)
    eval: int = Field(ge=0)


class Manifest(_Strict):
    """One data manifest YAML; `options` are checked by the source's own options model."""

    name: str = Field(min_length=1)
    source: str
    resolution: int = Field(ge=1)
    splits: Splits
    seed: int = Field(0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None
    obtain: str | None = None
    description: str = ""

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in _SOURCES:
            raise ValueError(f"unknown source {value!r}; registered: {', '.join(sorted(_SOURCES))}")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.lower()
            if len(value) != 64 or any(ch not in "0123456789abcdef" for ch in value):
                raise ValueError("expected 64 hexadecimal digits")
        return value


# --------------------------------------------------------------------------- source registry


@dataclass(frozen=True)
class Source:
    """A registered data source: its loader, options model and what it needs from the manifest."""

    name: str
    load: SourceFn
    options: type[BaseModel]
    needs_path: bool
    single_file: bool


class NoOptions(_Strict):
    """Options model of sources that take none."""


_SOURCES: dict[str, Source] = {}


def register_source(
    name: str,
    *,
    options: type[BaseModel] = NoOptions,
    needs_path: bool = False,
    single_file: bool = False,
) -> Callable[[SourceFn], SourceFn]:
    """Register `fn(manifest, manifest_path) -> (train, eval)` as the source called `name`."""

    def decorate(fn: SourceFn) -> SourceFn:
        if name in _SOURCES:
            raise ValueError(f"data source {name!r} is already registered")
        _SOURCES[name] = Source(name, fn, options, needs_path, single_file)
        return fn

    return decorate


def registered_sources() -> list[str]:
    """Names of the registered data sources."""
    return sorted(_SOURCES)


def source_options(manifest: Manifest, manifest_path: str | Path) -> Any:
    """The manifest's `options` validated by its source's options model."""
    model = _SOURCES[manifest.source].options
    try:
        return model.model_validate(manifest.options)
    except ValidationError as exc:
        raise _config_error(exc, Path(manifest_path), ("options",), model) from None


# --------------------------------------------------------------------------- manifest loading


def load_manifest(path: str | Path) -> Manifest:
    """Parse and validate a manifest YAML; every problem is a ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "", "manifest not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "expected a mapping of manifest keys at the top level")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, path, (), Manifest) from None
    source_options(manifest, path)
    _check_source_fields(manifest, path)
    return manifest


def _check_source_fields(manifest: Manifest, path: Path) -> None:
    source = _SOURCES[manifest.source]
    if source.needs_path and manifest.path is None:
        raise ConfigError(path, "path", f"source {source.name!r} needs the path of a local copy")
    if not source.needs_path and manifest.path is not None:
        raise ConfigError(path, "path", f"source {source.name!r} reads no local copy; remove it")
    if manifest.sha256 is not None and not source.single_file:
        raise ConfigError(path, "sha256", f"source {source.name!r} is not a single file to hash")


def _config_error(
    exc: ValidationError, file: Path, prefix: tuple[Any, ...], model: type[BaseModel]
) -> ConfigError:
    problems = [
        (".".join(str(part) for part in (*prefix, *err["loc"])), _describe_error(err, model))
        for err in exc.errors()
    ]
    key, message = problems[0]
    if len(problems) > 1:
        message += "; also " + "; ".join(f"{k or '(top)'}: {m}" for k, m in problems[1:])
    return ConfigError(file, key, message)


def _describe_error(err: Any, model: type[BaseModel]) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "missing":
        return "required key is missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        message += f" (got {err['input']!r:.60})"
    return message


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


# --------------------------------------------------------------------------- shared helpers


def resolve_path(value: str, manifest_path: str | Path) -> Path:
    """Expand `~` and `$VARS` in a manifest path; relative paths start at the manifest's folder."""
    path = Path(os.path.expanduser(os.path.expandvars(value)))
    return path if path.is_absolute() else Path(manifest_path).parent / path


def data_error(
    file: str | Path, problem: str, manifest: Manifest, manifest_path: str | Path
) -> DataError:
    """A DataError naming the file, the manifest and how to obtain the data."""
    hint = ""
    if "$" in str(file):
        hint = " (an environment variable in the path is not set)"
    how = manifest.obtain.strip() if manifest.obtain else "the manifest has no `obtain` text"
    return DataError(f"{file}: {problem}{hint} [manifest {manifest_path}]. To obtain it: {how}")


def _data_path(manifest: Manifest, manifest_path: Path) -> Path:
    assert manifest.path is not None  # load_manifest guarantees it for sources that need it
    return resolve_path(manifest.path, manifest_path)


def _to_uint8(images: np.ndarray) -> np.ndarray:
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


def _resize(images: np.ndarray, side: int) -> np.ndarray:
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


def _fit(images: np.ndarray, resolution: int, chunk: int = 1024) -> np.ndarray:
    """Center-crop and resize a uint8 NHWC batch to the manifest's resolution."""
    n, h, w = images.shape[:3]
    if (h, w) == (resolution, resolution):
        return images
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = images[:, top : top + s, left : left + s]
    out = np.empty((n, resolution, resolution, 3), np.uint8)
    for start in range(0, n, chunk):
        out[start : start + chunk] = _to_uint8(_resize(square[start : start + chunk], resolution))
    return out


def _take(
    images: np.ndarray, count: int, key: str, file: Path, manifest: Manifest, mpath: Path
) -> np.ndarray:
    if len(images) < count:
        problem = f"holds {len(images)} images but {key} asks for {count}"
        raise data_error(file, problem, manifest, mpath)
    return images[:count]


# --------------------------------------------------------------------------- skimage_patches

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


class SkimagePatchesOptions(_Strict):
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
    from skimage.transform import resize

    parent = _photo_level(name, level - 1)
    shape = (max(1, round(parent.shape[0] / 2)), max(1, round(parent.shape[1] / 2)))
    return resize(parent, shape, order=1, anti_aliasing=True).astype(np.float32)


def _patches(names: list[str], count: int, res: int, min_frac: float, rng: np.random.Generator):
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
        out[idx] = _to_uint8(_resize(np.stack([crops[i] for i in idx]), res))
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


# --------------------------------------------------------------------------- synthetic_shapes


class SyntheticShapesOptions(_Strict):
    """Options of `synthetic_shapes`."""

    min_shapes: int = Field(1, ge=0)
    max_shapes: int = Field(4, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> SyntheticShapesOptions:
        if self.min_shapes > self.max_shapes:
            raise ValueError("min_shapes must not exceed max_shapes")
        return self


def _shape_mask(kind: int, res: int, rng: np.random.Generator) -> np.ndarray:
    """A filled circle (0), axis-aligned rectangle (1) or triangle (2) at a random place."""
    yy, xx = np.mgrid[0:res, 0:res] + 0.5
    cy, cx = rng.uniform(0, res, 2)
    size = rng.uniform(0.1, 0.35) * res
    if kind == 0:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= size**2
    if kind == 1:
        hy, hx = size * rng.uniform(0.4, 1.0, 2)
        return (np.abs(yy - cy) <= hy) & (np.abs(xx - cx) <= hx)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 3))
    vy, vx = cy + size * np.sin(angles), cx + size * np.cos(angles)
    # Vertices sorted by angle run counter-clockwise, so inside means left of every edge.
    inside = np.ones((res, res), bool)
    for a in range(3):
        b = (a + 1) % 3
        cross = (vx[b] - vx[a]) * (yy - vy[a]) - (vy[b] - vy[a]) * (xx - vx[a])
        inside &= cross >= 0
    return inside


def _shapes(count: int, res: int, opts: SyntheticShapesOptions, rng: np.random.Generator):
    out = np.empty((count, res, res, 3), np.uint8)
    for i in range(count):
        out[i] = rng.integers(0, 256, 3, dtype=np.uint8)
        for _ in range(int(rng.integers(opts.min_shapes, opts.max_shapes + 1))):
            mask = _shape_mask(int(rng.integers(0, 3)), res, rng)
            out[i][mask] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


@register_source("synthetic_shapes", options=SyntheticShapesOptions)
def synthetic_shapes(manifest: Manifest, manifest_path: Path) -> Split:
    """Procedural filled circles, rectangles and triangles on plain backgrounds."""
    opts: SyntheticShapesOptions = source_options(manifest, manifest_path)
    res = manifest.resolution
    train = _shapes(manifest.splits.train, res, opts, np.random.default_rng([manifest.seed, 0]))
    eval_ = _shapes(manifest.splits.eval, res, opts, np.random.default_rng([manifest.seed, 1]))
    return train, eval_


# --------------------------------------------------------------------------- image_folder


class ImageFolderOptions(_Strict):
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
    if len(files) < count:
        problem = f"holds {len(files)} PNG/JPEG images but {key} asks for {count}"
        raise data_error(folder, problem, manifest, mpath)
    res = manifest.resolution
    out = np.empty((count, res, res, 3), np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, image in enumerate(
            pool.map(lambda f: _read_image(f, res, manifest, mpath), files[:count])
        ):
            out[i] = image
    return out


@register_source("image_folder", options=ImageFolderOptions, needs_path=True)
def image_folder(manifest: Manifest, manifest_path: Path) -> Split:
    """PNG/JPEG files under a folder (recursive, sorted), center-cropped and resized."""
    opts: ImageFolderOptions = source_options(manifest, manifest_path)
    folder = _data_path(manifest, manifest_path)
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


# --------------------------------------------------------------------------- cifar10_python

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a pickle can otherwise run code."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def _read_cifar_batch(file: Path, manifest: Manifest, mpath: Path) -> np.ndarray:
    if not file.is_file():
        raise data_error(file, "CIFAR-10 batch file not found", manifest, mpath)
    try:
        with file.open("rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
    except Exception as exc:  # every failure here means a corrupted file
        problem = f"not a CIFAR-10 python batch ({type(exc).__name__}: {exc})"
        raise data_error(file, problem, manifest, mpath) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        problem = f"b'data' is {data.dtype} {data.shape}, expected uint8 N x 3072"
        raise data_error(file, problem, manifest, mpath)
    # Each row holds the 32x32 red plane, then green, then blue (row-major within a plane).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@register_source("cifar10_python", needs_path=True)
def cifar10_python(manifest: Manifest, manifest_path: Path) -> Split:
    """The official CIFAR-10 python batches: train from data_batch_1..5, eval from test_batch."""
    folder = _data_path(manifest, manifest_path)
    if not folder.is_dir():
        raise data_error(folder, "CIFAR-10 folder not found", manifest, manifest_path)
    for name in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE):
        if not (folder / name).is_file():
            raise data_error(
                folder / name, "CIFAR-10 batch file not found", manifest, manifest_path
            )
    train = np.concatenate(
        [_read_cifar_batch(folder / n, manifest, manifest_path) for n in CIFAR10_TRAIN_FILES]
    )
    test = _read_cifar_batch(folder / CIFAR10_TEST_FILE, manifest, manifest_path)
    train = _take(train, manifest.splits.train, "splits.train", folder, manifest, manifest_path)
    test = _take(
        test,
        manifest.splits.eval,
        "splits.eval",
        folder / CIFAR10_TEST_FILE,
        manifest,
        manifest_path,
    )
    return _fit(train, manifest.resolution), _fit(test, manifest.resolution)


# --------------------------------------------------------------------------- npz


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _npz_split(
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
        images = _to_uint8(images)
    images = _take(images, count, f"splits.{key}", file, manifest, mpath)
    return _fit(images, manifest.resolution)


@register_source("npz", needs_path=True, single_file=True)
def npz(manifest: Manifest, manifest_path: Path) -> Split:
    """A .npz file holding arrays `train` and `eval` (uint8 NHWC, or floats in [0, 1])."""
    file = _data_path(manifest, manifest_path)
    if not file.is_file():
        raise data_error(file, "file not found", manifest, manifest_path)
    if manifest.sha256 is not None:
        actual = sha256_file(file)
        if actual != manifest.sha256:
            problem = f"sha256 is {actual}, the manifest expects {manifest.sha256}"
            raise data_error(file, problem, manifest, manifest_path)
    try:
        with np.load(file, allow_pickle=False) as arrays:
            train = _npz_split(
                arrays, "train", manifest.splits.train, file, manifest, manifest_path
            )
            eval_ = _npz_split(arrays, "eval", manifest.splits.eval, file, manifest, manifest_path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        problem = f"not a readable .npz file ({exc})"
        raise data_error(file, problem, manifest, manifest_path) from None
    return train, eval_


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True, eq=False)
class Dataset:
    """A materialized manifest: read-only uint8 NHWC arrays per split."""

    name: str
    train: np.ndarray
    eval: np.ndarray
    resolution: int
    content_hash: str
    manifest_path: Path
    source: str = ""


def content_hash(train: np.ndarray, eval_: np.ndarray) -> str:
    """sha256 over both splits' dtypes, shapes and pixel bytes."""
    digest = hashlib.sha256()
    for name, images in (("train", train), ("eval", eval_)):
        digest.update(f"{name}:{images.dtype.str}:{images.shape}\n".encode())
        digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def load_dataset(manifest_path: str | Path) -> Dataset:
    """Materialize a manifest's splits; repeated loads in one process reuse the arrays."""
    path = Path(manifest_path).expanduser().resolve()
    manifest = load_manifest(path)
    data_stamp = None
    if manifest.path is not None:
        data = resolve_path(manifest.path, path)
        data_stamp = data.stat().st_mtime_ns if data.exists() else None
    # The manifest's bytes, not its mtime: two edits within one timestamp tick must not collide.
    manifest_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return _load_cached(path, manifest_digest, data_stamp)


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, manifest_digest: str, data_stamp: int | None) -> Dataset:
    manifest = load_manifest(path)
    train, eval_ = _SOURCES[manifest.source].load(manifest, path)
    res = manifest.resolution
    for key, images, count in (
        ("train", train, manifest.splits.train),
        ("eval", eval_, manifest.splits.eval),
    ):
        if images.dtype != np.uint8 or images.shape != (count, res, res, 3):
            raise DataError(
                f"{path}: source {manifest.source!r} returned {key} as {images.dtype} "
                f"{images.shape}, expected uint8 {(count, res, res, 3)}"
            )
        images.setflags(write=False)  # the cached arrays are shared by every caller
    return Dataset(
        name=manifest.name,
        train=train,
        eval=eval_,
        resolution=res,
        content_hash=content_hash(train, eval_),
        manifest_path=path,
        source=manifest.source,
    )


# --------------------------------------------------------------------------- grids and summaries


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
    images = _to_uint8(images)
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


def describe(dataset: Dataset) -> str:
    """A short human summary of a materialized dataset."""
    train, eval_ = dataset.train, dataset.eval
    lines = [
        f"dataset   {dataset.name} (source {dataset.source})",
        f"manifest  {dataset.manifest_path}",
        f"splits    train {len(train)}, eval {len(eval_)}",
        f"images    {'x'.join(str(d) for d in train.shape[1:])} {train.dtype}",
        f"hash      sha256:{dataset.content_hash}",
    ]
    for key, images in (("train", train), ("eval", eval_)):
        if len(images):
            mean = images.reshape(-1, images.shape[-1]).mean(axis=0)
            lines.append(f"mean RGB  {key} " + " ".join(f"{m:.1f}" for m in mean))
    return "\n".join(lines)


def show(manifest_path: str | Path, out_png: str | Path | None = None) -> str:
    """`harness data show`: summary text plus a PNG grid of the first 64 train images."""
    dataset = load_dataset(manifest_path)
    out = Path(out_png) if out_png is not None else Path(f"{Path(manifest_path).stem}_preview.png")
    save_grid(dataset.train[:64], out, nrow=8)
    return f"{describe(dataset)}\npreview   {out}"
