"""The data sources, one module each; importing this package registers them all."""

from harness.data.sources import cifar10, image_folder, npz, skimage_patches, synthetic_shapes

__all__ = ["cifar10", "image_folder", "npz", "skimage_patches", "synthetic_shapes"]
