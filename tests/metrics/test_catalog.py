"""Tests of harness.metrics.catalog: what a logged metric name means to the regression gate."""

from __future__ import annotations

from harness.metrics.catalog import MetricFacts, describe


def test_interval_bounds_and_spreads_are_not_scores() -> None:
    for logged in ("fid_ci_low", "sample/fid_ci_high", "stage1/rfid_ci_low", "kid_ci_high",
                   "train_eval/kid_ci_low", "is_ci_high", "kid_std", "is_std"):
        assert describe(logged) is None, logged


def test_scores_keep_their_direction_and_n_dependence() -> None:
    assert describe("sample/fid") == MetricFacts(higher_is_better=False, depends_on_n=True)
    assert describe("kid") == MetricFacts(higher_is_better=False, depends_on_n=False)
    assert describe("fid_inf") == MetricFacts(higher_is_better=False, depends_on_n=True)
    assert describe("is") == MetricFacts(higher_is_better=True, depends_on_n=True)
    assert describe("psnr") == MetricFacts(higher_is_better=True, depends_on_n=False)


def test_one_class_value_of_per_class_kid_is_not_a_score_whatever_the_class_is_called() -> None:
    from harness.metrics.catalog import describe

    assert describe("sample/kid_per_class") is not None
    assert describe("sample/kid_per_class/fid") is None
    assert describe("kid_per_class/astronaut") is None
