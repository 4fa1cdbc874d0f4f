"""Source `synthetic_shapes`: procedural filled shapes on plain backgrounds.

Unlabeled: an image holds min_shapes..max_shapes shapes (1 to 4 by default) of kinds drawn
independently, so no one shape kind is the class of an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from harness.data.manifest import Manifest, Split, StrictModel, register_source, source_options


class SyntheticShapesOptions(StrictModel):
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


def _shapes(
    count: int, res: int, opts: SyntheticShapesOptions, rng: np.random.Generator
) -> np.ndarray:
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
