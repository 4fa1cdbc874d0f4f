"""Errors the user can act on: each names the file, the key path and what was expected."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base class of errors that the CLI reports without a traceback."""

    exit_code = 1


class ConfigError(HarnessError):
    """Bad input in an experiment YAML, a data manifest or a command-line override.

    `file` is the file the input came from, `key` the dotted key path inside it
    (empty for the whole file), `message` what was expected.
    """

    exit_code = 2

    def __init__(self, file: str | Path | None, key: str, message: str) -> None:
        self.file = str(file) if file is not None else "<command line>"
        self.key = key
        self.message = message
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {message}")


class DataError(HarnessError):
    """A dataset that a manifest names is missing, unreadable or corrupted."""

    exit_code = 2
