"""Tests of harness.metrics.result: intervals in a result's dict and in its MLflow fields."""

from __future__ import annotations

import json

from harness.metrics.bootstrap import describe_interval
from harness.metrics.result import MetricResult, interval_names, mlflow_fields, unavailable


def test_intervals_are_logged_as_bound_metrics_with_their_method_as_a_tag() -> None:
    fid = MetricResult("fid", 31.5, None, 256, "inception", "abc", 256, (29.0, 34.25),
                       describe_interval(100))
    kid_std = MetricResult("kid_std", 0.001, None, 256, "inception", "abc", 256)
    fields = mlflow_fields([fid, kid_std, unavailable("is", "no logits", 256)], "sample/")
    assert fields.metrics == {"sample/fid": 31.5, "sample/fid_ci_low": 29.0,
                              "sample/fid_ci_high": 34.25, "sample/kid_std": 0.001}
    assert fields.tags["sample/fid.interval"] == "bootstrap 95%, 100 rounds over the generated set"
    assert "sample/kid_std.interval" not in fields.tags
    assert interval_names("fid") == ("fid_ci_low", "fid_ci_high")


def test_a_non_finite_interval_is_not_logged() -> None:
    result = MetricResult("fid", 3.0, None, 8, interval=(float("nan"), 4.0),
                          interval_method="bootstrap")
    fields = mlflow_fields([result])
    assert set(fields.metrics) == {"fid"} and "fid.interval" not in fields.tags


def test_interval_survives_the_json_of_a_result() -> None:
    result = MetricResult("kid", 0.01, None, 64, interval=(0.005, 0.02), interval_method="x")
    assert json.loads(json.dumps(result.to_dict()))["interval"] == [0.005, 0.02]
    assert MetricResult("kid", 0.01, None, 64).to_dict()["interval"] is None
