"""Tests of harness.data.images: uint8 conversion, resizing and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.images import as_uint8, center_crop_resize, image_grid, resize, save_grid


@pytest.mark.parametrize(("h", "w", "side"), [(96, 96, 64), (50, 70, 64), (32, 32, 64)])
def test_resize_matches_skimage(h: int, w: int, side: int) -> None:
    from skimage.transform import resize as skimage_resize

    images = np.random.default_rng(0).random((3, h, w, 3)).astype(np.float32)
    expected = [
        skimage_resize(im, (side, side), order=1, anti_aliasing=max(h, w) > side) for im in images
    ]
    np.testing.assert_allclose(resize(images, side), np.stack(expected), atol=1e-5)


def test_as_uint8_rounds_and_clips() -> None:
    floats = np.array([-0.5, 0.0, 0.5 / 255, 1.49 / 255, 0.5, 1.0, 2.0])
    assert as_uint8(floats).tolist() == [0, 0, 0, 1, 128, 255, 255]
    pixels = np.arange(256, dtype=np.uint8)
    assert as_uint8(pixels) is pixels


def test_center_crop_resize_takes_the_middle_square() -> None:
    images = np.zeros((2, 8, 12, 3), np.uint8)
    images[:, :, 2:10] = 200  # the centered 8 x 8 square
    assert center_crop_resize(images, 8).min() == 200
    assert center_crop_resize(images, 4).shape == (2, 4, 4, 3)
    square = images[:, :, 2:10]
    assert center_crop_resize(square, 8) is square


def test_image_grid_layout() -> None:
    images = np.full((10, 8, 8, 3), 200, np.uint8)
    grid = image_grid(images, nrow=4, padding=2)
    assert grid.shape == (3 * 10 + 2, 4 * 10 + 2, 3) and grid.dtype == np.uint8
    assert grid[2, 2, 0] == 200 and grid[0, 0, 0] == 0 and grid[-3, -3, 0] == 0  # empty slot


def test_image_grid_rejects_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        image_grid(np.zeros((0, 8, 8, 3), np.uint8))


def test_save_grid_writes_png(tmp_path: Path) -> None:
    out = save_grid(np.zeros((10, 8, 8, 3), np.uint8), tmp_path / "sub" / "g.png", nrow=4)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (42, 32)
