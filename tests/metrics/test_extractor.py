"""Tests of harness.metrics.extractor: pool3 and IS in one pass, parity with torch-fidelity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.metrics.extractor import EXTRACTOR_NAME, Features, fuse, get_extractor
from harness.metrics.inception import InceptionNet, preprocess
from harness.metrics.precision import float32_exact
from harness.metrics.sets import evaluate_sets
from harness.weights import WeightsStore
from tests.models.meta import META


def test_full_inception_file_serves_pool3_and_is_in_one_pass(
        weights: WeightsStore, real: np.ndarray, features: dict[float, Features],
        tmp_path: Path) -> None:
    """torch-fidelity's layout with a logits layer (here a random one: the real file is not
    reachable offline) is recognized by its keys, preferred for pool3 and enables IS."""
    state = torch.load(weights.resolve("inception-pool3").path, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(1008, 2048, generator=generator) * 0.01
    state["fc.bias"] = torch.zeros(1008)
    torch.save(state, tmp_path / "full.pth")
    store = WeightsStore(tmp_path / "weights", hub_dir=tmp_path / "hub")
    with pytest.raises(Exception, match="allow-unverified"):
        store.import_weights(tmp_path / "full.pth")
    assert store.import_weights(tmp_path / "full.pth", allow_unverified=True)[0] == "inception-full"
    statuses = {s.network: s for s in store.status()}
    assert statuses["inception-logits"].available
    assert "unverified" in (statuses["inception-logits"].source or "")
    extractor = get_extractor(store)
    results = {r.name: r for r in evaluate_sets(None, real[:10], ["is"], weights=store)}
    assert extractor.passes == 1
    assert results["is"].value is not None and results["is"].value >= 1.0
    assert results["is"].weights_sha256 == statuses["inception-logits"].sha256
    same = extractor.extract(real[:4]).pool3
    np.testing.assert_allclose(same, features[0.0].pool3[:4], atol=1e-4)


def test_torch_fidelity_plain_path_matches_the_fast_path(weights: WeightsStore,
                                                         real: np.ndarray) -> None:
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    images = real[:4]
    plain = create_feature_extractor(EXTRACTOR_NAME, ["2048"], cuda=False, verbose=False)
    dataset = [torch.from_numpy(image.copy()).permute(2, 0, 1) for image in images]

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, index: int) -> torch.Tensor:
            return dataset[index]

    expected = get_featuresdict_from_dataset(Images(), plain, 64, False, True, False)["2048"]
    got = get_extractor(weights).extract(images).pool3
    assert np.abs(got - expected.numpy()).max() < 1e-4


def test_the_network_runs_on_the_device_it_is_given() -> None:
    """Preprocessing (the resize's affine grid included) and the fused network on meta; a
    torch.device("cpu") gets the CPU's fused network, as "cpu" does."""
    net = InceptionNet(with_logits=True).eval()
    on_meta = fuse(net, META)
    images = torch.empty(2, 3, 32, 32, dtype=torch.uint8, device=META)
    with torch.inference_mode(), float32_exact(META):
        pool3, logits = on_meta(preprocess(images).contiguous(memory_format=torch.channels_last))
    assert pool3.device == logits.device == META
    assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
    kinds = [type(module) for module in fuse(net, "cpu").modules()]
    assert [type(module) for module in fuse(net, torch.device("cpu")).modules()] == kinds


def test_a_cpu_device_is_the_default_extractor(weights: WeightsStore, real: np.ndarray,
                                               features: dict[float, Features]) -> None:
    """torch.device("cpu") from a trial's runtime is the same network and fused path as "cpu",
    and mixed precision or TF32 set by the caller does not reach it."""
    extractor = get_extractor(weights, torch.device("cpu"))
    assert extractor is get_extractor(weights) and extractor.device == torch.device("cpu")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # bf16 matmuls on the CPU (oneDNN)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = extractor.extract(real[:4])
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert got.pool3.dtype == np.float32
    assert np.array_equal(got.pool3, features[0.0].pool3[:4])
