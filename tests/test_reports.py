"""Reports on a real MLflow store (sqlite), filled through MLflow's own client API."""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from harness.config import ReportConfig, ReportMetric
from harness.errors import ConfigError
from harness.reports import add_commands
from harness.reports.compare import compare_sweeps
from harness.reports.fit import power_law_fit
from harness.reports.loading import ReportError, load_sweep
from harness.reports.report import write_report
from harness.reports.settings import ReportSettings, from_experiment, resolve

FUSIONS = ["add", "concat", "adaptive", "gated", "broken"]
# (psnr, lpips) per seed; PSNR (higher better) ranks adaptive > concat, LPIPS (lower better)
# ranks add < adaptive, so the two directions put bold and underline on different rows.
ABLATION = {
    "add": [(20.0, 0.10), (22.0, 0.12)],
    "concat": [(25.0, 0.20), (26.0, 0.22)],
    "adaptive": [(30.0, 0.15), (31.0, 0.16)],
    "gated": [(24.0, 0.50), None],  # seed 1 failed; ranked over the finished seed
    "broken": [None, None],  # every seed failed
}
K_VALUES = [16, 64, 256, 1024]
POWER_LAWS = {"ddcm": (2.0, -0.3), "gddcm": (3.0, -0.5)}  # LPIPS = a * K^b


def add_sweep(uri: str, experiment: str, sweep_id: str, start: int,
              trials: list[dict[str, Any]]) -> None:
    """One parent run and one child run per trial, with the harness's tag conventions."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    parent = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}", start_time=start,
                               tags={"sweep_id": sweep_id, "stage": "sweep",
                                     "git_commit": "c0ffee1"}).info.run_id
    for index, trial in enumerate(trials):
        trial_id = f"{experiment}-{index:03d}"
        tags = {"sweep_id": sweep_id, "stage": "trial", "trial_id": trial_id,
                "config_hash": f"{sweep_id}-{index}", "git_commit": "c0ffee1",
                "swept": json.dumps(trial["params"], sort_keys=True),
                MLFLOW_PARENT_RUN_ID: parent} | trial.get("tags", {})
        run_id = client.create_run(experiment_id, run_name=trial_id, start_time=start + index + 1,
                                   tags=tags).info.run_id
        metrics = [Metric(name, value, 0, 0) for name, value in trial.get("metrics", {}).items()]
        metrics += [Metric(name, value, step, step) for name, values in
                    trial.get("curves", {}).items() for step, value in enumerate(values)]
        client.log_batch(run_id, metrics=metrics,
                         params=[Param(k, str(v)) for k, v in trial["params"].items()])
        if "error" in trial:
            client.set_tag(run_id, "error", trial["error"])
        client.set_terminated(run_id, trial.get("status", "FAILED" if "error" in trial
                                                else "FINISHED"))
    client.set_terminated(parent, "FINISHED")


def ablation_trials(shift: float = 0.0) -> list[dict[str, Any]]:
    trials = []
    for fusion, seeds in ABLATION.items():
        for seed, values in enumerate(seeds):
            trial: dict[str, Any] = {"params": {"stage2.fusion": fusion, "seed": seed}}
            if values is None:
                trial["error"] = f"RuntimeError: {fusion} diverged\nTraceback ..."
            else:
                trial["metrics"] = {"recon/psnr": values[0] + shift, "recon/lpips": values[1]}
                if fusion == "add":  # both spellings of the tag
                    key = "unavailable/fid" if seed else "fid.unavailable"
                    trial["tags"] = {key: "no Inception weights offline"}
                else:
                    trial["metrics"]["fid"] = 10.0 + seed
            trials.append(trial)
    # a run of adaptive/seed 0 left by an interrupted driver; --resume re-ran that trial
    trials.append({"params": {"stage2.fusion": "adaptive", "seed": 0}, "status": "KILLED",
                   "metrics": {"recon/psnr": 99.0}, "tags": {"config_hash": "adaptive-0"}})
    trials[4]["tags"] = {"config_hash": "adaptive-0"}
    return trials


def codebook_trials() -> list[dict[str, Any]]:
    trials = []
    for variant, (scale, exponent) in POWER_LAWS.items():
        for k in K_VALUES:
            for seed, wobble in enumerate((1.01, 0.99)):  # the mean is the power law exactly
                lpips = scale * k ** exponent
                trials.append({"params": {"tokenizer.variant": variant, "stage1.K": k,
                                          "seed": seed},
                               "metrics": {"lpips": lpips * wobble},
                               "curves": {"train/loss": [1.0 / (step + 1) + seed * 0.01
                                                         for step in range(6)]}})
    return trials


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    add_sweep(uri, "ablation", "sweep-old", 1_700_000_000_000, ablation_trials(shift=-1.0))
    add_sweep(uri, "ablation", "sweep-new", 1_700_000_100_000, ablation_trials())
    add_sweep(uri, "codebook", "sweep-k", 1_700_000_200_000, codebook_trials())
    return uri


def ablation_settings() -> ReportSettings:
    report = ReportConfig(rows=["stage2.fusion"], metrics=[
        ReportMetric(name="recon/psnr", better="higher"),
        ReportMetric(name="recon/lpips", better="lower"),
        ReportMetric(name="fid", better="lower")])
    return from_experiment(report, {"stage2": {"fusion": {"sweep": FUSIONS}}})


def codebook_settings() -> ReportSettings:
    report = ReportConfig(rows=["stage1.K"], columns=["tokenizer.variant"],
                          metrics=[ReportMetric(name="lpips", better="lower")])
    return from_experiment(report, {})


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown table as {row label: {header: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    header, body = split[0], split[2:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


@pytest.fixture(scope="module")
def ablation_report(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ablation")
    write_report(load_sweep(store, "ablation"), ablation_settings(), out)
    return out


def test_latest_sweep_by_default_and_a_named_one(store: str) -> None:
    assert load_sweep(store, "ablation").sweep_id == "sweep-new"
    old = load_sweep(store, "ablation", "sweep-old")
    assert old.sweep_id == "sweep-old" and len(old.runs) == 10  # the KILLED duplicate is dropped
    assert old.date == "2023-11-14 22:13 UTC" and old.commits == ["c0ffee1"]
    with pytest.raises(ReportError, match="no sweep 'nope'"):
        load_sweep(store, "ablation", "nope")


def test_bold_and_underline_follow_the_direction_of_better(ablation_report: Path) -> None:
    rows = table_rows((ablation_report / "table.md").read_text())
    psnr, lpips = "PSNR (dB) ↑", "LPIPS ↓"
    assert rows["adaptive"][psnr].startswith("**30.50 ± 0.71**")
    assert rows["concat"][psnr].startswith("<ins>25.50 ± 0.71</ins>")
    assert rows["add"][lpips].startswith("**0.1100 ± 0.0141**")
    assert rows["adaptive"][lpips].startswith("<ins>0.1550 ± 0.0071</ins>")
    plain = [rows[name][psnr] for name in ("add", "gated")]
    assert not any("**" in cell or "<ins>" in cell for cell in plain)
    latex = (ablation_report / "table.tex").read_text()
    assert r"\textbf{30.50 $\pm$ 0.71}" in latex and r"\underline{25.50 $\pm$ 0.71}" in latex
    assert r"\textbf{0.1100 $\pm$ 0.0141}" in latex
    assert r"\underline{0.1550 $\pm$ 0.0071}" in latex
    assert all(rule in latex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"PSNR (dB) $\uparrow$" in latex and r"LPIPS $\downarrow$" in latex


def test_mean_and_std_over_seeds(ablation_report: Path) -> None:
    with (ablation_report / "table.csv").open() as file:
        rows = {row["stage2.fusion"]: row for row in csv.DictReader(file)}
    for fusion, seeds in ABLATION.items():
        psnr = [values[0] for values in seeds if values is not None]
        row = rows[fusion]
        assert int(row["recon/psnr n"] or 0) == len(psnr)
        if psnr:
            assert float(row["recon/psnr mean"]) == pytest.approx(statistics.fmean(psnr))
        if len(psnr) >= 2:
            assert float(row["recon/psnr std"]) == pytest.approx(statistics.stdev(psnr))
        else:
            assert row["recon/psnr std"] == ""
    assert math.isclose(float(rows["add"]["recon/lpips std"]), math.sqrt(2) / 100)


def test_failed_configurations_show_a_cross_and_partial_ones_a_footnote(
        ablation_report: Path) -> None:
    markdown = (ablation_report / "table.md").read_text()
    rows = table_rows(markdown)
    broken, gated = rows["broken"], rows["gated"]
    assert all(cell.startswith("✗") for header, cell in broken.items() if header != "fusion")
    assert gated["PSNR (dB) ↑"].startswith("24.00 (n=1)<sup>")
    assert rows["add"]["FID ↓"].startswith("n/a<sup>")
    assert "all 2 runs failed: FAILED (seeds 0, 1): RuntimeError: broken diverged" in markdown
    assert "mean over 1 of 2 runs; FAILED (seed 1): RuntimeError: gated diverged" in markdown
    assert "unavailable: no Inception weights offline" in markdown
    assert r"$\times$" in (ablation_report / "table.tex").read_text()
    assert [line.split("|")[1].strip() for line in markdown.splitlines()[4:9]] == FUSIONS
    index = (ablation_report / "index.md").read_text()
    assert "`sweep-new`" in index and "`c0ffee1`" in index and "2023-11-14 22:15 UTC" in index
    assert markdown.strip() in index and "## Runs that did not finish" in index


def test_power_law_fit_recovers_the_exponent() -> None:
    ks = [2.0 ** m for m in range(4, 12)]
    slope, intercept = power_law_fit(ks, [2.0 * k ** -0.3 for k in ks])
    assert abs(slope + 0.3) < 1e-6 and abs(10 ** intercept - 2.0) < 1e-6


def test_log_log_plot_of_lpips_against_k_reports_the_slopes(store: str, tmp_path: Path) -> None:
    report = write_report(load_sweep(store, "codebook"), codebook_settings(), tmp_path)
    (plot,) = report.plots
    assert plot.stem == "lpips_vs_stage1-K"
    fits = {fit.line: fit.slope for fit in plot.fits}
    assert set(fits) == set(POWER_LAWS)
    for variant, (_, exponent) in POWER_LAWS.items():
        assert abs(fits[variant] - exponent) < 1e-6
    (curve,) = report.curves
    assert curve.stem == "curve_train-loss"
    index = (tmp_path / "index.md").read_text()
    for path in plot.files + curve.files:
        assert path.is_file() and path.stat().st_size > 1000
    assert "![LPIPS vs codebook size K](plots/lpips_vs_stage1-K.png)" in index
    assert "-0.3000 (ddcm), -0.5000 (gddcm)" in index
    header = (tmp_path / "table.md").read_text().splitlines()[2]
    assert "variant=ddcm LPIPS ↓" in header and "variant=gddcm LPIPS ↓" in header


def test_two_renders_of_the_same_runs_are_byte_identical(store: str, tmp_path: Path) -> None:
    sweep = load_sweep(store, "codebook")
    first = write_report(sweep, codebook_settings(), tmp_path / "one")
    second = write_report(load_sweep(store, "codebook"), codebook_settings(), tmp_path / "two")
    names = [path.relative_to(first.out) for path in first.files]
    assert names == [path.relative_to(second.out) for path in second.files]
    assert {name.suffix for name in names} == {".md", ".tex", ".csv", ".png", ".pdf"}
    for name in names:
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name


def test_compare_prints_shared_metrics_side_by_side(store: str) -> None:
    text = compare_sweeps(load_sweep(store, "ablation", "sweep-old"),
                          load_sweep(store, "ablation", "sweep-new"), ablation_settings())
    assert "A: sweep sweep-old" in text and "B: sweep sweep-new" in text
    line = next(row for row in text.splitlines() if "| adaptive " in row and "PSNR" in row)
    assert [cell.strip() for cell in line.strip("|").split("|")] == [
        "adaptive", "PSNR (dB) ↑", "29.50", "30.50", "+1.00", "+3.4%", "B"]
    assert "| broken " in text and "✗" in text


def test_unknown_axis_is_a_config_error(store: str, tmp_path: Path) -> None:
    report = ReportConfig(rows=["stage2.fuzion"])
    with pytest.raises(ConfigError, match=r"report.rows: no param stage2.fuzion"):
        write_report(load_sweep(store, "ablation"), from_experiment(report, {}), tmp_path)


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


def test_default_plots_follow_the_axes() -> None:
    runs = pd.DataFrame({
        "params.stage1.K": [16, 64, 256], "params.sample.ddim_steps": [10, 20, 50],
        "params.gddcm.p": [0.05, 0.5, 0.95], "params.stage2.fusion": ["a", "b", "c"],
        "metrics.lpips": [0.3, 0.2, 0.1], "swept": [{"stage1.K": 16, "seed": 0}] * 3})
    report = ReportConfig(rows=["stage1.K", "sample.ddim_steps", "gddcm.p", "stage2.fusion"])
    plots = resolve(from_experiment(report, {}), runs).plots
    assert [(p.x, p.logx, p.logy, p.fit, p.metrics) for p in plots] == [
        ("stage1.K", True, True, True, ("lpips",)),
        ("sample.ddim_steps", True, False, False, ("lpips",)),
        ("gddcm.p", False, False, False, ("lpips",))]
    assert resolve(from_experiment(ReportConfig(), {}), runs).rows == ("stage1.K",)


def test_plots_and_curves_from_report_settings(store: str, tmp_path: Path) -> None:
    """The optional `plots` and `curves` of the report block (read from dicts or models)."""
    report = SimpleNamespace(rows=["stage1.K"], columns=[], metrics=[
        ReportMetric(name="lpips", better="lower")], curves=[],
        plots=[{"x": "stage1.K", "logx": True}])
    result = write_report(load_sweep(store, "codebook"), from_experiment(report, {}), tmp_path)
    assert [plot.stem for plot in result.plots] == ["lpips_vs_stage1-K"]
    assert result.plots[0].fits == [] and result.curves == []
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == [
        "lpips_vs_stage1-K.pdf", "lpips_vs_stage1-K.png"]


def test_direction_of_better_defaults_from_the_name_and_none_is_not_ranked() -> None:
    report = ReportConfig(metrics=[ReportMetric(name="fid"), ReportMetric(name="stage1/psnr"),
                                   ReportMetric(name="stage1/latent_h", better="none"),
                                   ReportMetric(name="kid", better="higher")])
    specs = from_experiment(report, {}).metrics
    assert [spec.better for spec in specs] == ["lower", "higher", None, "higher"]
