"""harness.tokenizer.tokens: the token file (format gddcm-tokens-3) on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.config import GDDCMConfig
from harness.errors import HarnessError
from harness.tokenizer.api import encode
from harness.tokenizer.tokens import FORMAT, TokenFile
from tests.tokenizer.gaussian import SHAPE, ddpm, flow, gaussian_data, toy_model


def test_a_token_file_round_trips_with_its_optional_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 256, (3, 5, 4), dtype=np.int32)
    init = rng.integers(0, 256, (3, 4), dtype=np.int32)
    reference = rng.standard_normal((3, *SHAPE)).astype(np.float32)
    meta = {"format": FORMAT, "config": {"K": 256}, "count": 3}
    for optional in ({}, {"init_indices": init}, {"init_reference": reference}):
        tokens = TokenFile(indices, meta, **optional)
        loaded = TokenFile.load(tokens.save(tmp_path / "tokens.npz"))
        assert np.array_equal(loaded.indices, indices) and loaded.indices.dtype == np.int32
        assert loaded.meta == meta
        for name in ("init_indices", "init_reference"):
            if name in optional:
                assert np.array_equal(getattr(loaded, name), optional[name])
            else:
                assert getattr(loaded, name) is None
        assert loaded.tokens_per_image == 5 * 4 + (4 if "init_indices" in optional else 0)
        assert loaded.bits_per_image == loaded.tokens_per_image * 8  # log2 256


def test_the_meta_names_the_process_and_the_prediction() -> None:
    tokens = encode(toy_model(ddpm("v")), gaussian_data(3), GDDCMConfig(K=16, N=4, P=2))
    meta = tokens.meta
    assert meta["format"] == FORMAT == "gddcm-tokens-3" and "marginal" not in meta
    assert meta["process"] == {"name": "ddpm", "T": 100, "prediction": "v", "t_min": -1,
                               "t_max": 99, "discrete": True}
    assert meta["data_shape"] == list(SHAPE) and meta["count"] == 3
    assert meta["config"] == GDDCMConfig(K=16, N=4, P=2).model_dump(mode="json")
    assert meta["config_hash"] == GDDCMConfig(K=16, N=4, P=2).digest()
    json.dumps(meta)  # stored as JSON
    assert encode(toy_model(flow()), gaussian_data(3), GDDCMConfig(K=16, N=4, P=2)).meta[
        "process"] == {"name": "rectified_flow", "T": 100, "prediction": "v", "t_min": 0.0,
                       "t_max": 1.0, "discrete": False}
    assert tokens.bits_per_image == (meta["tokens_per_cell"] + 1) * math.log2(16)


def test_other_files_and_formats_are_refused(tmp_path: Path) -> None:
    old = TokenFile(np.zeros((1, 2, 1), np.int32), {"format": "gddcm-tokens-2"})
    with pytest.raises(HarnessError, match="token format 'gddcm-tokens-2', expected "
                                           "gddcm-tokens-3"):
        TokenFile.load(old.save(tmp_path / "old.npz"))
    np.savez(tmp_path / "other.npz", images=np.zeros(3))
    with pytest.raises(HarnessError, match="not a gDDCM token file"):
        TokenFile.load(tmp_path / "other.npz")
    with pytest.raises(HarnessError, match="not a gDDCM token file"):
        TokenFile.load(tmp_path / "missing.npz")
