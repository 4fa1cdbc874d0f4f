"""Tests of harness.metrics.extractor: pool3 and IS in one pass, parity with torch-fidelity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.metrics.extractor import EXTRACTOR_NAME, Features, get_extractor
from harness.metrics.sets import evaluate_sets
from harness.weights import WeightsStore


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
