"""Tests of harness.metrics.cli: the `harness metrics` and `harness weights` commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.weights import WeightsStore
from tests.metrics.helpers import noisy


@pytest.fixture
def store(tmp_path: Path) -> WeightsStore:
    return WeightsStore(tmp_path / "weights", hub_dir=tmp_path / "hub")


def _cli(argv: list[str]) -> int:
    from harness.metrics.cli import add_commands

    parser = argparse.ArgumentParser(prog="harness")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_metrics_command_on_paired_folders(weights: WeightsStore, real: np.ndarray,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no hub file with logits
    for folder, images in (("real", real[:4]), ("fake", noisy(real[:4], 8))):
        (tmp_path / folder).mkdir()
        for index, image in enumerate(images):
            Image.fromarray(image).save(tmp_path / folder / f"{index}.png")
    code = _cli(["metrics", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                 "--pairs", "--metrics", "psnr,lpips,is,fid", "--weights-dir", str(weights.root),
                 "--no-cache", "--no-progress", "--json", str(tmp_path / "out.json"),
                 "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "psnr" in out and "lpips" in out and "unavailable" in out
    assert "95% interval" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    saved = {r["name"]: r for r in json.loads((tmp_path / "out.json").read_text())}
    low, high = saved["fid"]["interval"]
    assert low < saved["fid"]["value"] < high
    assert f"[{low:.6g}, {high:.6g}]" in rows["fid"]
    assert saved["fid"]["interval_method"] == "bootstrap 95%, 20 rounds over the generated set"
    assert saved["psnr"]["interval"] is None and " - " in rows["psnr"]


def test_weights_status_command(store: WeightsStore, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.metrics.cli import add_commands

    parser = argparse.ArgumentParser(prog="harness")
    add_commands(parser.add_subparsers(dest="command", required=True))
    for argv in (["weights", "status", "--help"], ["weights", "provision", "--help"],
                 ["weights", "import", "--help"], ["metrics", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        assert exit_.value.code == 0
    assert "--bootstrap N" in capsys.readouterr().out  # the metrics help, printed last
    with pytest.raises(SystemExit):
        parser.parse_args(["metrics", "--real", "r", "--fake", "f", "--bootstrap", "-1"])
    args = parser.parse_args(["weights", "status", "--weights-dir", str(store.root)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "inception-pool3" in out and "lpips-alex" in out and "inception-logits" in out
