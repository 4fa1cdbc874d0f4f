"""The `harness report` subcommand: its arguments and its handler (imports pandas and
matplotlib only when it runs)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from harness.cli.common import TRACKING_HELP, add_experiment_arguments


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `report` on the `harness` command's subparsers."""
    report = subparsers.add_parser(
        "report", help="tables and plots of a sweep from MLflow",
        description="Read one sweep of an experiment from MLflow and write paper-style tables "
        "(Markdown, LaTeX, CSV; mean ± std over seeds, best bold, second underlined, ✗ for "
        "configurations that failed) and plots (PNG, PDF) with an index.md. The same runs "
        "always give the same bytes.")
    add_experiment_arguments(report, "experiment YAML whose sweep to report, e.g. "
                             "experiments/ablation_fusion.yaml")
    which = report.add_mutually_exclusive_group()
    which.add_argument("--sweep-id", metavar="ID",
                       help="report this sweep (default: the experiment's latest sweep)")
    which.add_argument("--compare", nargs=2, metavar=("SWEEP_A", "SWEEP_B"),
                       help="print a side-by-side table of the metrics both sweeps share "
                            "(mean per configuration, B - A) instead of writing a report")
    report.add_argument("--out", type=Path, metavar="DIR",
                        help="folder to write into (default: reports/<experiment name>)")
    report.add_argument("--tracking-uri", metavar="URI", help=TRACKING_HELP)
    report.set_defaults(handler=cmd_report)


def attach_report(experiment: Path, profiles: list[str], overrides: list[str], uri: str,
                  sweep_id: str | None, out: Path | None = None, command: str = ""
                  ) -> tuple[Any, Any]:
    """Write the report of a sweep (into `out`, else a temporary folder) and attach its
    index.md, tables and plots to the sweep run as artifacts under `report/`, so the MLflow
    UI shows it; returns (sweep, report)."""
    import shutil
    import tempfile

    from mlflow.tracking import MlflowClient

    from harness.reports.loading import load_sweep
    from harness.reports.report import write_report
    from harness.reports.settings import from_experiment

    spec, raw = load_spec(experiment, profiles, overrides)
    settings = from_experiment(spec.report, raw, experiment)
    sweep = load_sweep(uri, spec.name, sweep_id)
    folder = out or Path(tempfile.mkdtemp(prefix="harness-report-"))
    try:
        report = write_report(sweep, settings, folder, spec.description,
                              command or f"harness report {experiment} --sweep-id "
                              f"{sweep.sweep_id}")
        MlflowClient(uri).log_artifacts(sweep.parent_run_id, str(report.out), "report")
    finally:
        if out is None:
            shutil.rmtree(folder, ignore_errors=True)
    return sweep, report


def load_spec(path: Path, profiles: list[str], overrides: list[str]) -> tuple[Any, dict[str, Any]]:
    """The validated experiment file and its raw YAML, after profiles and overrides."""
    from harness.config import load_experiment

    # A report needs the runs, not the data: a machine without the dataset can still report.
    experiment = load_experiment(path, profiles, overrides, require_dataset=False)
    return experiment.spec, experiment.raw


def _command(args: argparse.Namespace, sweep_id: str) -> str:
    path = args.experiment
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    words = ["harness", "report", path.as_posix()]
    words += [word for name in args.profile for word in ("--profile", name)]
    words += [word for item in args.overrides for word in ("--set", item)]
    return shlex.join([*words, "--sweep-id", sweep_id])


def cmd_report(args: argparse.Namespace) -> int:
    from harness.reports.loading import load_sweep
    from harness.reports.report import compare_sweeps
    from harness.reports.settings import from_experiment
    from harness.tracking import tracking_uri

    spec, raw = load_spec(args.experiment, args.profile, args.overrides)
    settings = from_experiment(spec.report, raw, args.experiment)
    uri = tracking_uri(args.tracking_uri)
    if args.compare:
        first, second = (load_sweep(uri, spec.name, sweep_id) for sweep_id in args.compare)
        print(compare_sweeps(first, second, settings), end="")
        return 0
    sweep_id = args.sweep_id or load_sweep(uri, spec.name).sweep_id
    sweep, report = attach_report(args.experiment, args.profile, args.overrides, uri, sweep_id,
                                  args.out or Path("reports") / spec.name,
                                  _command(args, sweep_id))
    print(f"sweep {sweep.sweep_id} ({sweep.date}): {len(report.table.rows)} table rows, "
          f"{len(report.plots)} plots, {len(report.curves)} training curves")
    print(f"wrote {len(report.files)} files; open {report.out / 'index.md'} (also attached "
          f"to the sweep run {sweep.parent_run_id} under report/)")
    return 0
