"""Per-arm uncertainty and significance over seeds: t intervals, Welch and permutation tests,
Holm correction, edge cases and the sentences that report them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from harness.reports.statistics import (
    ArmSummary,
    Comparison,
    compare_to_best,
    describe,
    format_p,
    holm,
    permutation_p,
    seeds_needed,
    smallest_permutation_p,
    summarize,
    welch_df,
    welch_p,
)

NAN = float("nan")


def normal_arms(shift: float, seeds: int = 8, seed: int = 1) -> dict[str, list[float]]:
    """Two arms of N(300, 2²) noise, the second shifted by `shift`. (With seed 0 the unshifted
    arms happen to differ at p = 0.003: one of the false positives alpha allows for, which
    `test_welch_false_positive_rate_is_near_alpha` bounds over many draws.)"""
    rng = np.random.default_rng(seed)
    return {"add": list(rng.normal(300.0, 2.0, seeds)),
            "other": list(rng.normal(300.0 + shift, 2.0, seeds))}


# --- summaries -------------------------------------------------------------------------------

def test_t_interval_matches_a_hand_computation() -> None:
    # mean 2.5; s = sqrt(((1.5² + 0.5²) · 2) / 3) = sqrt(5/3); t_{0.975, 3} = 3.182446 (table)
    summary = summarize("x", [1.0, 2.0, 3.0, 4.0])
    half = 3.182446 * math.sqrt(5 / 3) / math.sqrt(4)
    assert summary.n == 4 and summary.mean == 2.5
    assert summary.std == pytest.approx(math.sqrt(5 / 3))
    assert summary.ci == pytest.approx((2.5 - half, 2.5 + half), abs=1e-5)
    assert summary.ci == pytest.approx((0.44574, 4.55426), abs=1e-5)


def test_a_wider_confidence_level_gives_a_wider_interval() -> None:
    narrow = summarize("x", [1.0, 2.0, 3.0, 4.0], level=0.90).ci
    wide = summarize("x", [1.0, 2.0, 3.0, 4.0], level=0.99).ci
    assert narrow is not None and wide is not None
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_one_seed_has_a_mean_but_no_spread() -> None:
    summary = summarize("x", [3.0])
    assert (summary.n, summary.mean, summary.std, summary.ci) == (1, 3.0, None, None)
    assert summary.note == "one seed: no spread"


def test_nans_and_infinities_are_dropped_and_counted() -> None:
    summary = summarize("x", [1.0, NAN, 3.0, float("inf")])
    assert summary.values == (1.0, 3.0) and summary.n == 2 and summary.dropped == 2
    assert summary.mean == 2.0 and summary.std == pytest.approx(math.sqrt(2))
    assert summary.note == "dropped 2 non-finite values"
    empty = summarize("x", [NAN])
    assert empty.n == 0 and math.isnan(empty.mean) and empty.std is None
    assert empty.note.startswith("no finite values")


def test_summary_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        summarize("x", [1.0, 2.0]).mean = 0.0  # type: ignore[misc]
    assert isinstance(summarize("x", [1.0]), ArmSummary)


# --- Holm ------------------------------------------------------------------------------------

def test_holm_on_known_p_values() -> None:
    # sorted 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> running max 0.06; input order kept
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_clips_to_one_and_keeps_a_single_p() -> None:
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == pytest.approx([0.02])
    assert holm([]) == []


# --- the tests themselves --------------------------------------------------------------------

def test_permutation_p_is_exact_on_a_tiny_example() -> None:
    # a = [1, 4], b = [2, 3, 6]: |2.5 - 11/3| = 7/6. A pair with sum s from the pooled
    # {1, 2, 3, 4, 6} (total 16) gives |s/2 - (16 - s)/3| = |5s - 32| / 6 >= 7/6 iff s <= 5 or
    # s >= 8. The 10 pair sums are 3, 4, 5, 7, 5, 6, 8, 7, 9, 10: seven qualify -> p = 7/10.
    p, exact = permutation_p(np.array([1.0, 4.0]), np.array([2.0, 3.0, 6.0]))
    assert exact and p == pytest.approx(0.7)


def test_permutation_p_of_two_seeds_cannot_go_below_one_third() -> None:
    # [1, 2] vs [3, 4]: of the 6 splits only {1, 2} and its mirror {3, 4} reach |d| = 2
    p, _ = permutation_p(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert p == pytest.approx(1 / 3)
    assert smallest_permutation_p(2, 2) == pytest.approx(1 / 3)
    far, _ = permutation_p(np.array([1.0, 2.0]), np.array([1e6, 2e6]))
    assert far == pytest.approx(1 / 3)


def test_smallest_permutation_p_and_seeds_needed() -> None:
    assert smallest_permutation_p(3, 3) == pytest.approx(2 / 20)
    assert smallest_permutation_p(2, 3) == pytest.approx(1 / 10)
    assert smallest_permutation_p(4, 4) == pytest.approx(2 / 70)
    assert seeds_needed(0.05, 1) == 4  # 2/70 = 0.029 < 0.05 <= 2/20
    assert seeds_needed(0.05, 2) == 5  # 2 · 2/70 = 0.057, 2 · 2/252 = 0.016


def test_monte_carlo_permutation_approximates_the_exact_p_and_is_seeded() -> None:
    a, b = np.array([1.0, 4.0]), np.array([2.0, 3.0, 6.0])
    p, exact = permutation_p(a, b, exact_limit=0, rounds=20_000, seed=3)
    assert not exact and p == pytest.approx(0.7, abs=0.02)
    assert permutation_p(a, b, exact_limit=0, rounds=20_000, seed=3) == (p, False)


def test_welch_degrees_of_freedom_by_hand() -> None:
    # s_a²/n_a = (5/3)/4 = 5/12, s_b²/n_b = 4/3: (5/12 + 4/3)² / ((5/12)²/3 + (4/3)²/2)
    # = 3.0625 / (25/432 + 8/9) = 3.23471
    assert welch_df(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])) == \
        pytest.approx(3.23471, abs=1e-5)
    assert 1.0 <= welch_df(np.array([1.0, 2.0]), np.array([5.0, 9.0])) <= 2.0


def test_welch_p_is_the_unequal_variance_t_test_by_hand() -> None:
    # t = (2.5 - 4) / sqrt(5/12 + 4/3) = -1.5 / sqrt(1.75) on 3.23471 degrees of freedom (the
    # pooled-variance Student test would give t = -1.218 on 5)
    p = welch_p(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0]))
    assert p == pytest.approx(2 * stats.t.sf(1.5 / math.sqrt(1.75), 3.23471), rel=1e-5)


# --- compare_to_best -------------------------------------------------------------------------

@pytest.mark.parametrize("test", ["welch", "permutation"])
def test_arms_from_one_distribution_are_indistinguishable(test: str) -> None:
    (comparison,) = compare_to_best(normal_arms(shift=0.0), higher_is_better=False, test=test)
    assert comparison.testable and comparison.indistinguishable and not comparison.significant
    assert comparison.p_holm is not None and comparison.p_holm > 0.05


@pytest.mark.parametrize("test", ["welch", "permutation"])
def test_a_clearly_shifted_arm_is_distinguishable(test: str) -> None:
    (comparison,) = compare_to_best(normal_arms(shift=20.0), higher_is_better=False, test=test)
    assert (comparison.arm, comparison.best) == ("other", "add")
    assert comparison.significant and not comparison.indistinguishable
    assert comparison.difference == pytest.approx(20.0, abs=3.0)
    assert comparison.p_holm is not None and comparison.p_holm < 0.001


def test_welch_false_positive_rate_is_near_alpha() -> None:
    rng = np.random.default_rng(7)
    hits = sum(compare_to_best({"a": list(rng.normal(0, 1, 8)), "b": list(rng.normal(0, 1, 8))},
                               higher_is_better=True)[0].significant for _ in range(300))
    assert 0.01 <= hits / 300 <= 0.10


def test_direction_picks_the_best_mean() -> None:
    arms = {"low": [1.0, 1.1, 0.9], "mid": [5.0, 5.2, 4.8], "high": [9.0, 9.1, 8.9]}
    assert {c.best for c in compare_to_best(arms, higher_is_better=True)} == {"high"}
    assert {c.best for c in compare_to_best(arms, higher_is_better=False)} == {"low"}
    lower = compare_to_best(arms, higher_is_better=False)
    assert [c.arm for c in lower] == ["mid", "high"]
    assert [c.difference for c in lower] == pytest.approx([4.0, 8.0])


def test_holm_runs_over_the_family_of_testable_comparisons() -> None:
    arms = {"best": [0.0, 0.1, 0.2, 0.3], "b": [0.2, 0.4, 0.1, 0.5], "c": [1.0, 1.3, 0.9, 1.2],
            "single": [5.0]}
    comparisons = compare_to_best(arms, higher_is_better=False)
    testable = [c for c in comparisons if c.testable]
    assert len(testable) == 2 and all(c.family_size == 2 for c in comparisons)
    assert [c.p_holm for c in testable] == pytest.approx(holm([c.p_raw for c in testable]))
    (single,) = [c for c in comparisons if c.arm == "single"]
    assert single.p_raw is None and single.p_holm is None and not single.significant


def test_an_arm_with_one_seed_is_not_testable() -> None:
    comparisons = compare_to_best({"a": [1.0, 2.0, 3.0], "b": [7.0, NAN]}, True)
    (comparison,) = comparisons
    assert comparison.best == "a"  # a single seed cannot be best: nothing to test against
    assert not comparison.testable and comparison.p_raw is None
    assert "one seed in b" in comparison.reason and "dropped 1 non-finite value" in \
        comparison.reason
    assert comparison.indistinguishable


def test_an_arm_without_values_is_not_testable() -> None:
    (comparison,) = compare_to_best({"a": [1.0, 2.0], "b": [NAN, NAN]}, True)
    assert not comparison.testable and math.isnan(comparison.difference)
    assert comparison.reason.startswith("no finite values in b")
    assert compare_to_best({"a": [NAN]}, True) == []


def test_zero_variance_equal_arms_have_p_one() -> None:
    (comparison,) = compare_to_best({"a": [2.0, 2.0, 2.0], "b": [2.0, 2.0]}, False)
    assert comparison.p_raw == 1.0 and comparison.p_holm == 1.0
    assert "constant and equal" in comparison.reason


def test_zero_variance_different_arms_are_not_testable_with_welch() -> None:
    arms = {"a": [1.0, 1.0], "b": [2.0, 2.0]}
    (welch,) = compare_to_best(arms, higher_is_better=False)
    assert not welch.testable and "no spread" in welch.reason and welch.family_size == 0
    # a permutation test needs no spread: [1, 1] vs [2, 2] is the most extreme of 6 splits
    (permutation,) = compare_to_best(arms, higher_is_better=False, test="permutation")
    assert permutation.testable and permutation.p_raw == pytest.approx(1 / 3)


def test_one_constant_arm_against_a_spread_arm_is_testable_with_welch() -> None:
    (comparison,) = compare_to_best({"a": [1.0, 1.0, 1.0], "b": [3.0, 4.0, 5.0]}, False)
    assert comparison.testable and comparison.p_raw is not None and comparison.p_raw < 0.05


def test_unknown_test_is_rejected() -> None:
    with pytest.raises(ValueError, match="test must be one of"):
        compare_to_best({"a": [1.0, 2.0]}, True, test="mann-whitney")  # type: ignore[arg-type]


# --- in words --------------------------------------------------------------------------------

def comparison(arm: str, p_holm: float, significant: bool, difference: float) -> Comparison:
    return Comparison(arm=arm, best="add", difference=difference, p_raw=p_holm / 2,
                      p_holm=p_holm, significant=significant, reason="", method="Welch",
                      n_arm=8, n_best=8, family_size=2, alpha=0.05, df=13.0,
                      p_floor=smallest_permutation_p(8, 8),
                      p_floor_holm=2 * smallest_permutation_p(8, 8))


def test_describe_says_each_comparison_in_words() -> None:
    lines = describe([comparison("adaptive", 0.41, False, 0.4),
                      comparison("concat", 0.003, True, 5.7)], "FID", higher_is_better=False)
    assert lines == [
        "FID (lower is better): adaptive vs add (best): not significant, p = 0.41 "
        "(Welch, Holm-corrected over 2 comparisons)",
        "FID (lower is better): concat vs add (best): worse by 5.7, p = 0.003 "
        "(Welch, Holm-corrected over 2 comparisons)"]


def test_describe_warns_when_there_are_too_few_seeds() -> None:
    arms = {"add": [308.0, 312.0], "concat": [315.0, 317.0], "adaptive": [314.8, 316.6]}
    lines = describe(compare_to_best(arms, False, test="permutation"), "FID", False)
    assert len(lines) == 3
    assert lines[-1] == (
        "FID (lower is better): too few seeds: with 2 seeds per arm a permutation test cannot "
        "go below p = 0.33 (0.67 after Holm over 2 comparisons), so no difference can be "
        "significant at α = 0.05; run at least 5 seeds per arm.")
    welch = describe(compare_to_best(arms, False), "FID", False)
    assert "unless one trusts Welch's t on" in welch[-1]


def test_describe_is_quiet_about_seeds_when_there_are_enough() -> None:
    lines = describe(compare_to_best(normal_arms(shift=20.0), False), "FID", False)
    assert len(lines) == 1 and "too few seeds" not in lines[0]
    assert lines[0].startswith("FID (lower is better): other vs add (best): worse by ")
    assert "p < 0.001 (Welch, Holm-corrected over 1 comparison)" in lines[0]


def test_describe_explains_untestable_comparisons_and_higher_is_better() -> None:
    lines = describe(compare_to_best({"a": [0.3, 0.31], "b": [0.5]}, True), "precision", True)
    assert lines == ["precision (higher is better): b vs a (best): not testable: one seed in b: "
                     "no spread to test against"]


@pytest.mark.parametrize(("p", "text"), [(0.0004, "p < 0.001"), (0.003, "p = 0.003"),
                                         (0.0312, "p = 0.031"), (0.41, "p = 0.41"),
                                         (1.0, "p = 1.00")])
def test_format_p(p: float, text: str) -> None:
    assert format_p(p) == text
