"""The `harness report` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from harness.reports import add_commands
from tests.reports.helpers import FUSIONS


def test_report_command(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="harness")
    add_commands(parser.add_subparsers(dest="command"))
    experiment = tmp_path / "ablation.yaml"
    experiment.write_text(json.dumps({
        "name": "ablation", "dataset": "missing_manifest.yaml",
        "stage2": {"fusion": {"sweep": FUSIONS}},
        "report": {"rows": ["stage2.fusion"],
                   "metrics": [{"name": "recon/psnr", "better": "higher"}]}}))
    args = parser.parse_args(["report", str(experiment), "--tracking-uri", store,
                              "--out", str(tmp_path / "out")])
    assert args.handler(args) == 0
    assert "open " in capsys.readouterr().out
    assert (tmp_path / "out" / "index.md").is_file()
    args = parser.parse_args(["report", str(experiment), "--tracking-uri", store,
                              "--compare", "sweep-old", "sweep-new"])
    assert args.handler(args) == 0
    assert "| adaptive " in capsys.readouterr().out
