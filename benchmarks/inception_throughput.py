"""Inception feature throughput: the harness's extraction path vs torch-fidelity's plain path.

Both run the same network (the provisioned TF Inception weights, the same preprocessing) on
the same images. The plain path is torch-fidelity's own feature loop with its default settings
(`get_featuresdict_from_dataset`, batch 64, its DataLoader, `no_grad`, NCHW); the harness path
folds BatchNorm into the convolutions, runs each conv+ReLU as one oneDNN call, channels_last,
under `inference_mode`. Rounds alternate between the paths so that load from other processes
hits both alike.

    python benchmarks/inception_throughput.py [--num-images 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from harness.data import load_dataset
from harness.metrics.extractor import DEFAULT_BATCH, EXTRACTOR_NAME, InceptionExtractor
from harness.weights import resolve

REPO = Path(__file__).resolve().parent.parent


class Images(torch.utils.data.Dataset):
    """uint8 CHW tensors, the input torch-fidelity's loop expects."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = torch.from_numpy(images.copy()).permute(0, 3, 1, 2)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=64,
                        help="eval images of data_manifests/skimage_patches.yaml (64x64)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per path")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                        help="harness path batch size")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    images = load_dataset(REPO / "data_manifests" / "skimage_patches.yaml").eval[:args.num_images]
    found = resolve("inception-pool3")
    plain = create_feature_extractor(EXTRACTOR_NAME, ["2048"], cuda=False, verbose=False,
                                     feature_extractor_weights_path=str(found.path))
    fast = InceptionExtractor(found.path, found.sha256, args.batch_size)
    dataset = Images(images)

    def run_plain() -> np.ndarray:
        return get_featuresdict_from_dataset(
            dataset, plain, DEFAULTS["batch_size"], False, DEFAULTS["save_cpu_ram"],
            False)["2048"].numpy()

    def run_fast() -> np.ndarray:
        return fast.extract(images).pool3

    run_fast(), run_plain()  # warm-up: allocator, oneDNN primitives, worker start-up code paths
    times: dict[str, list[float]] = {"plain": [], "harness": []}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, fn in (("plain", run_plain), ("harness", run_fast)):
            seconds, outputs[name] = timed(fn)
            times[name].append(seconds)

    count = len(images)
    print(f"{count} images {images.shape[1]}x{images.shape[2]} -> 299x299, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds, "
          f"weights {found.sha256[:12]} ({found.source})")
    rates = {}
    for name, label in (("plain", f"plain   (torch-fidelity defaults: batch "
                                  f"{DEFAULTS['batch_size']}, DataLoader, no_grad, NCHW)"),
                        ("harness", f"harness (BN folded, conv+ReLU fused, channels_last, "
                                    f"inference_mode, batch {args.batch_size})")):
        rate = [count / s for s in times[name]]
        rates[name] = statistics.median(rate)
        print(f"{label}: median {rates[name]:.2f} img/s, best {max(rate):.2f}, "
              f"all {', '.join(f'{r:.2f}' for r in rate)}")
    best = max(count / s for s in times["harness"]) / max(count / s for s in times["plain"])
    print(f"speed-up: {rates['harness'] / rates['plain']:.2f}x (median), {best:.2f}x (best)")
    diff = float(np.abs(outputs["harness"] - outputs["plain"]).max())
    print(f"max |feature difference|: {diff:.3g} (features up to "
          f"{float(np.abs(outputs['plain']).max()):.3g})")


if __name__ == "__main__":
    main()
