"""Tests of harness.weights.store: resolving and verifying weights, unavailable ones."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.metrics import get_pairwise
from harness.metrics.evaluate import evaluate_pairs
from harness.weights import WeightsError, WeightsStore, WeightsUnavailable, using
from harness.weights.formats import new_lpips
from harness.weights.store import ExplicitFile


def test_corrupted_weights_file_is_rejected_naming_it(store: WeightsStore,
                                                      tmp_path: Path) -> None:
    torch.save(new_lpips().state_dict(), tmp_path / "lpips.pth")
    _, path = store.import_weights(tmp_path / "lpips.pth", allow_unverified=True)
    store.resolve("lpips-alex")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=re.escape(str(path))):
        store.resolve("lpips-alex")
    with using(store), pytest.raises(WeightsError, match="corrupted"):
        get_pairwise("lpips").provenance()
    assert str(path) in (store.status()[2].reason or "")


def test_corrupted_hub_download_is_rejected(store: WeightsStore) -> None:
    assert store.hub_dir is not None
    bad = store.hub_dir / "checkpoints" / "alexnet-owt-7be5be79.pth"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"truncated")
    with pytest.raises(WeightsError, match=re.escape("alexnet-owt-7be5be79.pth")):
        store.resolve("lpips-alex")


def test_explicit_file_is_checked_by_sha256(tmp_path: Path) -> None:
    torch.save(new_lpips().state_dict(), tmp_path / "mine.pth")
    wrong = ExplicitFile(tmp_path / "mine.pth", "0" * 64)
    with pytest.raises(WeightsError, match=re.escape("mine.pth")):
        WeightsStore(tmp_path, explicit={"lpips-alex": wrong}).resolve("lpips-alex")
    from harness.cache import file_sha256

    right = ExplicitFile(tmp_path / "mine.pth", file_sha256(tmp_path / "mine.pth"))
    found = WeightsStore(tmp_path, explicit={"lpips-alex": right}).resolve("lpips-alex")
    assert (found.source, found.kind) == ("explicit file", "lpips-alex")
    with pytest.raises(WeightsError, match="cannot serve"):
        WeightsStore(tmp_path, explicit={"inception-pool3": right}).resolve("inception-pool3")


def test_missing_weights_make_lpips_unavailable_not_an_error(store: WeightsStore) -> None:
    with pytest.raises(WeightsUnavailable, match="provision"):
        store.resolve("inception-pool3")
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with using(store):
        results = evaluate_pairs(images, images, ["l1", "lpips"])
    assert results[0].value == 0.0
    assert results[1].value is None and "provision" in (results[1].unavailable_reason or "")
