"""Command-line arguments that several `harness` subcommands share."""

from __future__ import annotations

import argparse
from pathlib import Path

TRACKING_HELP = ("MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else "
                 "sqlite:///mlflow.db in the working directory")


def add_experiment_arguments(parser: argparse.ArgumentParser, experiment_help: str) -> None:
    """EXPERIMENT, --profile and --set, read the same way by every subcommand."""
    parser.add_argument("experiment", type=Path, help=experiment_help)
    parser.add_argument("--profile", action="append", default=[], metavar="NAME",
                        help="deep-merge the named block of the YAML's `profiles` over the "
                             "config (repeatable; applied in order)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one key after the profiles, e.g. --set stage1.f=8 or "
                             "--set 'stage2.fusion={sweep: [add, concat]}' (value parsed as "
                             "YAML; repeatable)")
