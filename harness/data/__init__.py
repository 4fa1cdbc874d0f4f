"""Data manifests and the datasets they describe, as uint8 NHWC train/eval arrays, with int64
class labels where the source has them (Dataset.train_labels, eval_labels, classes).

manifest: the schema, loading and the source registry; sources: the registered sources;
store: the splits materialized once on disk and memory-mapped; dataset: loading a manifest's
dataset from its store; images: conversions and grids; tensors: the model's float tensors
(the only module that imports torch).
"""

from harness.data import sources  # noqa: F401  (registers the sources before any manifest loads)
from harness.data.dataset import Dataset, describe, load_dataset, show
from harness.data.images import IMAGE_SUFFIXES, image_grid, save_grid
from harness.data.manifest import Manifest, load_manifest

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "Manifest",
    "describe",
    "image_grid",
    "load_dataset",
    "load_manifest",
    "save_grid",
    "show",
]
