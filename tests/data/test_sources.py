"""Tests of harness.data.sources: the five registered data sources."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.dataset import load_dataset
from harness.data.manifest import load_manifest, source_options
from harness.data.sources import skimage_patches as skimage_patches_module
from harness.data.sources.npz import _mapped_member
from harness.data.sources.skimage_patches import (
    DEFAULT_TRAIN_PHOTOS,
    SKIMAGE_PHOTOS,
    Crop,
    SkimagePatchesOptions,
    crop_boxes,
    grid_cells,
    photo_shape,
    split_cells,
)
from harness.errors import ConfigError, DataError
from tests.data.helpers import MANIFESTS, write_cifar_folder, write_manifest

# --------------------------------------------------------------------------- skimage_patches

PHOTOGRAPHS = {"split": "photographs"}


def _default_options() -> tuple[SkimagePatchesOptions, int]:
    manifest = load_manifest(MANIFESTS / "skimage_patches.yaml")
    return source_options(manifest, MANIFESTS / "skimage_patches.yaml"), manifest.seed


def _overlap(a: Crop, b: Crop) -> bool:
    """Whether two crops of one photograph share a pixel."""
    rows = max(a.top, b.top) < min(a.top + a.side, b.top + b.side)
    return rows and max(a.left, b.left) < min(a.left + a.side, b.left + b.side)


def test_skimage_regions_train_and_eval_share_no_pixel() -> None:
    options, seed = _default_options()
    assert options.split == "regions" and options.grid == 3
    assert options.images == list(DEFAULT_TRAIN_PHOTOS)
    crops = crop_boxes(options, seed, 2048, 512)
    assert [c.split for c in crops] == ["train"] * 2048 + ["eval"] * 512
    for index, name in enumerate(options.images):
        height, width = photo_shape(name)
        cells = split_cells(index, height, width, options.grid)
        train = [c for c in crops if c.photo == name and c.split == "train"]
        eval_ = [c for c in crops if c.photo == name and c.split == "eval"]
        assert len(train) > 200 and len(eval_) > 50  # every photograph feeds both splits
        assert not any(_overlap(t, e) for t in train for e in eval_)
        for crop in train + eval_:
            top, bottom, left, right = crop.cell
            assert crop.cell in cells[crop.split]
            assert top <= crop.top and crop.top + crop.side <= bottom
            assert left <= crop.left and crop.left + crop.side <= right
            assert top >= 0 and bottom <= height and left >= 0 and right <= width


@pytest.mark.parametrize("grid", [2, 3, 4, 7])
@pytest.mark.parametrize("shape", [(512, 512), (400, 600), (427, 640), (872, 1000), (17, 23)])
def test_skimage_cells_tile_the_photo(shape: tuple[int, int], grid: int) -> None:
    height, width = shape
    cover = np.zeros(shape, int)
    for top, bottom, left, right in grid_cells(height, width, grid):
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        cover[top:bottom, left:right] += 1
    assert (cover == 1).all()  # no gap, no overlap
    for index in range(grid + 1):
        cells = split_cells(index, height, width, grid)
        assert sorted(cells["train"] + cells["eval"]) == sorted(grid_cells(height, width, grid))
        # One eval cell in every row and every column of the grid.
        assert len(cells["eval"]) == grid
        assert len({cell[0] for cell in cells["eval"]}) == grid
        assert len({cell[2] for cell in cells["eval"]}) == grid


def test_skimage_regions_no_train_pixel_reaches_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Photographs that are 0 in train cells and 1 in eval cells: any train pixel leaking into an
    # eval image (even through the anti-aliasing filters of the pyramid) would darken it.
    real_photo = skimage_patches_module._photo
    names = list(DEFAULT_TRAIN_PHOTOS)

    def fake_photo(name: str) -> np.ndarray:
        photo = np.zeros_like(real_photo(name))
        for top, bottom, left, right in split_cells(names.index(name), *photo.shape[:2], 3)["eval"]:
            photo[top:bottom, left:right] = 1.0
        return photo

    skimage_patches_module._cell_level.cache_clear()
    monkeypatch.setattr(skimage_patches_module, "_photo", fake_photo)
    try:
        options = {"min_crop_frac": 0.1}
        path = write_manifest(
            tmp_path,
            source="skimage_patches",
            resolution=16,
            splits={"train": 256, "eval": 128},
            options=options,
        )
        dataset = load_dataset(path, tmp_path / "cache")  # a store of its own fake pixels
    finally:
        skimage_patches_module._cell_level.cache_clear()
    assert (dataset.train == 0).all() and (dataset.eval == 255).all()


def test_skimage_crop_boxes_deterministic_by_seed() -> None:
    options, _ = _default_options()
    first = crop_boxes(options, 0, 64, 16)
    assert first == crop_boxes(options, 0, 64, 16)
    assert first != crop_boxes(options, 1, 64, 16)
    # Each split has its own generator: more eval crops leave the train crops alone.
    assert crop_boxes(options, 0, 64, 32)[:64] == first[:64]


def test_skimage_patches_deterministic_by_seed(tmp_path: Path) -> None:
    small = {"source": "skimage_patches", "resolution": 32, "splits": {"train": 24, "eval": 8}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_dataset(write_manifest(tmp_path / "a", **small))
    again = load_dataset(write_manifest(tmp_path / "b", **small))
    other = load_dataset(write_manifest(tmp_path, "seed1.yaml", seed=1, **small))
    assert first is not again  # two files, so two materializations
    assert first.content_hash == again.content_hash
    np.testing.assert_array_equal(first.train, again.train)
    np.testing.assert_array_equal(first.eval, again.eval)
    assert first.content_hash != other.content_hash
    assert not np.array_equal(first.train, other.train)
    assert first.train.shape == (24, 32, 32, 3) and first.eval.shape == (8, 32, 32, 3)
    assert first.train.dtype == np.uint8 and first.eval.dtype == np.uint8
    assert first.train.std() > 10  # real photographs, not a constant
    assert not np.array_equal(first.train[:8], first.eval)


# Content hashes of the held-out-photographs split as produced before `split: regions` existed.
HELDOUT_HASHES = [
    (
        "skimage_patches_heldout.yaml",
        None,
        "ce997d07c9b19bd8e0aec5fca25982cd5d401efb74a0d496d3b9fc4df13c0e8e",
    ),
    (
        None,
        {"resolution": 32, "splits": {"train": 24, "eval": 8}, "options": PHOTOGRAPHS},
        "06f543ffc94e31f47d82024cc52859cafaf705849d7c5200b1075a5162c45025",
    ),
    (
        None,
        {
            "resolution": 48,
            "splits": {"train": 40, "eval": 10},
            "seed": 7,
            "options": {
                **PHOTOGRAPHS,
                "min_crop_frac": 0.5,
                "train_images": ["retina", "coffee"],
                "eval_images": ["astronaut"],
            },
        },
        "4acc63058381d306f0a8a0c046ee0139c0aadd4fb359f40eab77f73c9ae81aa8",
    ),
]


@pytest.mark.parametrize(("shipped", "fields", "expected"), HELDOUT_HASHES)
def test_skimage_photographs_split_unchanged(
    tmp_path: Path, shipped: str | None, fields: dict | None, expected: str
) -> None:
    path = (
        MANIFESTS / shipped
        if shipped
        else write_manifest(tmp_path, source="skimage_patches", **(fields or {}))
    )
    assert load_dataset(path).content_hash == expected


def test_skimage_photographs_split_uses_only_its_photos() -> None:
    manifest = load_manifest(MANIFESTS / "skimage_patches_heldout.yaml")
    options = source_options(manifest, MANIFESTS / "skimage_patches_heldout.yaml")
    assert options.split == "photographs"
    assert options.train_images == list(DEFAULT_TRAIN_PHOTOS)
    assert options.eval_images == ["chelsea", "motorcycle"]
    crops = crop_boxes(options, manifest.seed, 512, 128)
    assert {c.photo for c in crops if c.split == "train"} == set(DEFAULT_TRAIN_PHOTOS)
    assert {c.photo for c in crops if c.split == "eval"} == {"chelsea", "motorcycle"}
    for crop in crops:
        assert crop.cell == (0, photo_shape(crop.photo)[0], 0, photo_shape(crop.photo)[1])
    # `cat` would be the same photograph as `chelsea` under another name.
    assert "cat" not in SKIMAGE_PHOTOS


@pytest.mark.parametrize(
    ("options", "key", "words"),
    [
        ({"train_images": ["astronaut"]}, "options.train_images", "split: photographs"),
        ({"eval_images": ["chelsea"]}, "options.eval_images", "split: photographs"),
        ({**PHOTOGRAPHS, "images": ["astronaut"]}, "options.images", "split: regions"),
        ({**PHOTOGRAPHS, "grid": 4}, "options.grid", "split: regions"),
        ({"split": "tiles"}, "options.split", "regions"),
        ({"images": ["astronaut", "lena"]}, "options.images", "lena"),
        ({"images": []}, "options.images", "at least 1"),
        ({"images": ["coffee", "rocket", "coffee"]}, "options.images", "repeated"),
        ({"grid": 1}, "options.grid", "greater than or equal to 2"),
        ({"grid": 60}, "options.grid", "coffee"),
        ({"images": ["chelsea"], "grid": 38}, "options.grid", "minimum of 8"),
        ({**PHOTOGRAPHS, "eval_images": ["chelsea", "lena"]}, "options.eval_images", "lena"),
        (
            {**PHOTOGRAPHS, "train_images": ["coffee"], "eval_images": ["coffee"]},
            "options",
            "held out",
        ),
    ],
)
def test_skimage_bad_options_name_the_key(
    tmp_path: Path, options: dict, key: str, words: str
) -> None:
    path = write_manifest(tmp_path, source="skimage_patches", options=options)
    with pytest.raises(ConfigError, match=words) as info:
        load_manifest(path)
    assert info.value.key == key


def test_skimage_largest_valid_grid_loads(tmp_path: Path) -> None:
    # chelsea is 300 pixels high: grid 37 leaves cells of 8 pixels, the minimum.
    options = {"images": ["chelsea"], "grid": 37}
    path = write_manifest(tmp_path, source="skimage_patches", options=options)
    assert source_options(load_manifest(path), path).grid == 37


def test_skimage_patches_flip_horizontally(tmp_path: Path) -> None:
    # Whole-photo crops of the square astronaut: every patch is the photo or its mirror image.
    options = {
        **PHOTOGRAPHS,
        "min_crop_frac": 1.0,
        "train_images": ["astronaut"],
        "eval_images": ["chelsea"],
    }
    fields = {"source": "skimage_patches", "resolution": 32, "options": options}
    dataset = load_dataset(write_manifest(tmp_path, splits={"train": 16, "eval": 2}, **fields))
    photo = dataset.train[0]
    mirrored = np.array([np.array_equal(im, photo[:, ::-1]) for im in dataset.train])
    same = np.array([np.array_equal(im, photo) for im in dataset.train])
    assert (mirrored | same).all() and mirrored.any() and same.any()


# --------------------------------------------------------------------------- synthetic_shapes


def test_synthetic_shapes(tmp_path: Path) -> None:
    dataset = load_dataset(write_manifest(tmp_path, seed=3))
    assert dataset.train.shape == (8, 16, 16, 3) and dataset.eval.shape == (4, 16, 16, 3)
    assert dataset.train.dtype == np.uint8
    twin = load_dataset(write_manifest(tmp_path, "twin.yaml", seed=3))
    np.testing.assert_array_equal(dataset.train, twin.train)
    assert not np.array_equal(dataset.train[:4], dataset.eval)
    other = load_dataset(write_manifest(tmp_path, "other.yaml", seed=4))
    assert other.content_hash != dataset.content_hash
    # Every image has a background plus at least one shape of another color.
    assert all(len(np.unique(im.reshape(-1, 3), axis=0)) >= 2 for im in dataset.train)


def test_synthetic_shapes_option_order(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, options={"min_shapes": 5, "max_shapes": 2})
    with pytest.raises(ConfigError, match="min_shapes"):
        load_manifest(path)


# --------------------------------------------------------------------------- cifar10_python


@pytest.fixture
def cifar_dir(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    folder = tmp_path / "cifar-10-batches-py"
    return folder, write_cifar_folder(folder, 4)


def _cifar_manifest(folder: Path, **fields: object) -> Path:
    body = {
        "source": "cifar10_python",
        "resolution": 32,
        "path": "cifar-10-batches-py",
        "splits": {"train": 20, "eval": 4},
        "obtain": "download cifar-10-python.tar.gz",
    }
    body.update(fields)
    return write_manifest(folder, **body)


def test_cifar_decodes_channel_major_rows(tmp_path: Path, cifar_dir) -> None:
    folder, batches = cifar_dir
    # One known pixel written straight into the raw row: red plane, then green, then blue.
    raw = np.zeros((4, 3072), np.uint8)
    raw[1, 0 * 1024 + 5 * 32 + 7] = 11
    raw[1, 1 * 1024 + 5 * 32 + 7] = 22
    raw[1, 2 * 1024 + 5 * 32 + 7] = 33
    batch = {b"batch_label": b"b2", b"labels": [0] * 4, b"data": raw, b"filenames": []}
    with (folder / "data_batch_2").open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    dataset = load_dataset(_cifar_manifest(tmp_path))
    assert dataset.train.shape == (20, 32, 32, 3) and dataset.eval.shape == (4, 32, 32, 3)
    assert tuple(dataset.train[4 + 1, 5, 7]) == (11, 22, 33)
    assert dataset.train[4 + 1].sum() == 66
    np.testing.assert_array_equal(dataset.train[:4], batches[0])
    np.testing.assert_array_equal(dataset.train[16:], batches[4])
    np.testing.assert_array_equal(dataset.eval, batches[5])


def test_cifar_resizes_and_counts(tmp_path: Path, cifar_dir) -> None:
    small = _cifar_manifest(tmp_path, resolution=16, splits={"train": 6, "eval": 2})
    dataset = load_dataset(small)
    assert dataset.train.shape == (6, 16, 16, 3) and dataset.eval.shape == (2, 16, 16, 3)
    with pytest.raises(DataError, match=r"splits\.train"):
        load_dataset(_cifar_manifest(tmp_path, splits={"train": 21, "eval": 2}))


def test_cifar_missing_test_batch(tmp_path: Path, cifar_dir) -> None:
    folder, _ = cifar_dir
    (folder / "test_batch").unlink()
    with pytest.raises(DataError) as info:
        load_dataset(_cifar_manifest(tmp_path))
    assert str(folder / "test_batch") in str(info.value)
    assert "download cifar-10-python.tar.gz" in str(info.value)


def test_cifar_corrupted_and_hostile_batches(tmp_path: Path, cifar_dir) -> None:
    folder, _ = cifar_dir
    (folder / "data_batch_3").write_bytes(b"\x80\x02not really a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(_cifar_manifest(tmp_path))
    with (folder / "data_batch_3").open("wb") as fh:
        pickle.dump({b"data": os.getcwd}, fh, protocol=2)  # a pickle that calls code
    with pytest.raises(DataError, match="unexpected object"):
        load_dataset(_cifar_manifest(tmp_path, name="again"))


def test_cifar_missing_folder_says_how_to_obtain(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download cifar-10-python") as info:
        load_dataset(_cifar_manifest(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)


# --------------------------------------------------------------------------- image_folder

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (9, 99, 199)]


def _write_images(folder: Path, count: int, offset: int = 0) -> list[Path]:
    files = []
    for i in range(count):
        sub = folder / ("a" if i < 3 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        file = sub / f"{i:02d}.png"
        Image.new("RGB", (40, 30), COLORS[(i + offset) % len(COLORS)]).save(file)
        files.append(file)
    return files


def _folder_manifest(folder: Path, **fields: object) -> Path:
    body = {
        "source": "image_folder",
        "path": "imgs",
        "resolution": 16,
        "splits": {"train": 3, "eval": 2},
        "obtain": "copy the images into imgs/",
    }
    body.update(fields)
    return write_manifest(folder, **body)


def test_image_folder_order_and_split(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    dataset = load_dataset(_folder_manifest(tmp_path))
    assert dataset.train.shape == (3, 16, 16, 3) and dataset.eval.shape == (2, 16, 16, 3)
    assert [tuple(im[8, 8]) for im in dataset.train] == COLORS[:3]
    assert [tuple(im[8, 8]) for im in dataset.eval] == COLORS[3:5]


def test_image_folder_eval_path(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 3)
    _write_images(tmp_path / "val", 2, offset=5)
    path = _folder_manifest(tmp_path, options={"eval_path": "val"})
    dataset = load_dataset(path)
    assert [tuple(im[0, 0]) for im in dataset.eval] == [COLORS[5], COLORS[0]]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="copy the images into imgs") as info:
        load_dataset(_folder_manifest(tmp_path))
    assert str(tmp_path / "imgs") in str(info.value)
    files = _write_images(tmp_path / "imgs", 4)
    with pytest.raises(DataError, match=r"holds 4 PNG/JPEG images but splits\.train"):
        load_dataset(_folder_manifest(tmp_path, name="few"))
    _write_images(tmp_path / "imgs", 5)
    files[1].write_bytes(files[1].read_bytes()[:40])  # truncated PNG
    with pytest.raises(DataError) as info:
        load_dataset(_folder_manifest(tmp_path, name="broken"))
    assert str(files[1]) in str(info.value)


# --------------------------------------------------------------------------- npz


def test_npz_roundtrip_float_and_sha256(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    eval_ = rng.random((3, 16, 16, 3))
    np.savez(tmp_path / "d.npz", train=train, eval=eval_)
    digest = hashlib.sha256((tmp_path / "d.npz").read_bytes()).hexdigest()
    fields = {"source": "npz", "path": "d.npz", "splits": {"train": 5, "eval": 3}}
    dataset = load_dataset(write_manifest(tmp_path, sha256=digest, **fields))
    np.testing.assert_array_equal(dataset.train, train)
    np.testing.assert_array_equal(dataset.eval, np.rint(eval_ * 255).astype(np.uint8))

    wrong = write_manifest(tmp_path, "wrong.yaml", sha256="f" * 64, obtain="ask Ann", **fields)
    with pytest.raises(DataError, match="sha256") as info:
        load_dataset(wrong)
    assert str(tmp_path / "d.npz") in str(info.value) and "ask Ann" in str(info.value)


def test_npz_path_expands_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = np.zeros((2, 16, 16, 3), np.uint8)
    np.savez(tmp_path / "z.npz", train=images, eval=images)
    monkeypatch.setenv("HARNESS_TEST_DATA", str(tmp_path))
    fields = {"source": "npz", "splits": {"train": 2, "eval": 2}}
    dataset = load_dataset(write_manifest(tmp_path, path="$HARNESS_TEST_DATA/z.npz", **fields))
    assert dataset.train.shape == (2, 16, 16, 3)


def test_npz_bad_contents(tmp_path: Path) -> None:
    fields = {"source": "npz", "path": "d.npz", "splits": {"train": 2, "eval": 2}}
    np.savez(tmp_path / "d.npz", train=np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(DataError, match="'eval'"):
        load_dataset(write_manifest(tmp_path, **fields))
    (tmp_path / "d.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable"):
        load_dataset(write_manifest(tmp_path, "g.yaml", **fields))


def test_npz_too_few_images(tmp_path: Path) -> None:
    images = np.zeros((2, 16, 16, 3), np.uint8)
    np.savez(tmp_path / "d.npz", train=images, eval=images[:0])
    fields = {"source": "npz", "path": "d.npz", "splits": {"train": 3, "eval": 0}}
    with pytest.raises(DataError, match=r"holds 2 images but splits\.train asks for 3"):
        load_dataset(write_manifest(tmp_path, **fields))


def test_npz_maps_stored_members_and_reads_compressed_ones(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    train = np.asfortranarray(rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    eval_ = rng.random((2, 16, 16, 3)).astype(np.float32)
    np.savez(tmp_path / "stored.npz", train=train, eval=eval_)
    np.savez_compressed(tmp_path / "packed.npz", train=train, eval=eval_)
    mapped = _mapped_member(tmp_path / "stored.npz", "train.npy")
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, train)
    np.testing.assert_array_equal(_mapped_member(tmp_path / "stored.npz", "eval.npy"), eval_)
    assert _mapped_member(tmp_path / "packed.npz", "train.npy") is None
    fields = {"source": "npz", "splits": {"train": 6, "eval": 2}}
    stored = load_dataset(write_manifest(tmp_path, "s.yaml", path="stored.npz", **fields))
    packed = load_dataset(write_manifest(tmp_path, "p.yaml", path="packed.npz", **fields))
    np.testing.assert_array_equal(stored.train, train)
    assert stored.content_hash == packed.content_hash
