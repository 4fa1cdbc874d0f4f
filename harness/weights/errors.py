"""What goes wrong with a metric network's weights, and how their files are named."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError


class WeightsError(HarnessError):
    """A weights file that exists but cannot be used (wrong hash, unknown content); names it."""

    exit_code = 2


class WeightsUnavailable(HarnessError):
    """No weights for a network; the message says why and how to get them."""

    exit_code = 2


def hash_prefix(filename: str) -> str:
    """The sha256 prefix a published weights file carries in its name (`name-<prefix>.pth`)."""
    return Path(filename).stem.rsplit("-", 1)[-1]
