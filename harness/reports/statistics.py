"""Uncertainty and significance over seeds: is an arm of a sweep really worse than the best?

A report table shows mean ± std over seeds per arm (one arm = one configuration). This module
says how far such a mean can be trusted and whether the gap to the best arm is more than seed
noise:

- `summarize`: an arm's mean, sample std and Student-t confidence interval of the mean.
- `compare_to_best`: every arm against the best one, with Welch's t-test or a permutation test
  over seeds, Holm-Bonferroni corrected over the family of comparisons.
- `describe`: the comparisons as sentences, e.g.
  "FID (lower is better): concat vs add (best): worse by 5.7, p = 0.003 (Welch, Holm-corrected
  over 2 comparisons)".

Few seeds, few conclusions. With 2 seeds per arm Welch's t has only 1 to 2 degrees of freedom
(Welch-Satterthwaite), so its p-value leans entirely on the noise being normal; and a
permutation test, which assumes nothing but exchangeable seeds, has only C(4, 2) = 6 ways to
split 4 values into two pairs, so its p-value cannot go below 2/6 = 1/3 (the observed split and
its mirror image are always at least as extreme as themselves). No gap, however large, is then
significant at alpha = 0.05; `describe` says so and how many seeds would be needed.

Pure numpy/scipy: no pandas, MLflow or torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from scipy import stats

Test = Literal["welch", "permutation"]
TESTS: tuple[str, ...] = ("welch", "permutation")
EXACT_LIMIT = 20_000  # enumerate every split of the seeds up to this many, else Monte Carlo
ROUNDS = 20_000  # Monte Carlo rounds of the permutation test


@dataclass(frozen=True)
class ArmSummary:
    """One arm's values over seeds (non-finite values dropped) and their spread."""

    name: str
    values: tuple[float, ...]  # one per seed, NaN/inf dropped
    n: int
    mean: float  # NaN without values
    std: float | None  # sample std (ddof 1); None below two seeds: one seed has no spread
    ci: tuple[float, float] | None  # Student-t interval of the mean; None below two seeds
    level: float = 0.95  # confidence level of `ci`
    dropped: int = 0  # non-finite values dropped

    @property
    def note(self) -> str:
        """Why there is no std or interval, or what was dropped; empty when nothing to say."""
        notes = []
        if self.n == 0:
            notes.append("no finite values")
        elif self.n == 1:
            notes.append("one seed: no spread")
        if self.dropped:
            notes.append(f"dropped {self.dropped} non-finite value{_s(self.dropped)}")
        return "; ".join(notes)


def finite(values: Sequence[float]) -> np.ndarray:
    """The values as a float array without NaN or ±inf (a failed or diverged seed)."""
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def sample_std(values: np.ndarray) -> float:
    """Sample standard deviation s = sqrt(sum (x - mean)^2 / (n - 1)) (Bessel, ddof 1)."""
    return float(np.std(values, ddof=1))


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean: mean ± t_{(1+level)/2, n-1} · s / sqrt(n)."""
    n = values.size
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sample_std(values) / math.sqrt(n)
    mean = float(np.mean(values))
    return float(mean - half), float(mean + half)


def summarize(name: str, values: Sequence[float], level: float = 0.95) -> ArmSummary:
    """Mean, sample std and t interval of one arm over its seeds; std and interval are None
    below two seeds."""
    kept = finite(values)
    n = kept.size
    dropped = len(np.asarray(values, dtype=float).ravel()) - n
    return ArmSummary(
        name=name, values=tuple(float(v) for v in kept), n=n,
        mean=float(np.mean(kept)) if n else math.nan,
        std=sample_std(kept) if n >= 2 else None,
        ci=t_interval(kept, level) if n >= 2 else None,
        level=level, dropped=dropped)


def welch_df(a: np.ndarray, b: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom:
    (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1)).
    About 1 to 2 with two seeds per arm; NaN when both arms are constant."""
    va, vb = np.var(a, ddof=1) / a.size, np.var(b, ddof=1) / b.size
    denominator = va**2 / (a.size - 1) + vb**2 / (b.size - 1)
    return float((va + vb) ** 2 / denominator) if denominator > 0 else math.nan


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p of Welch's unequal-variance t-test,
    t = (mean_a - mean_b) / sqrt(s_a²/n_a + s_b²/n_b) on `welch_df` degrees of freedom."""
    with warnings.catch_warnings():
        if np.ptp(a) == 0 or np.ptp(b) == 0:  # scipy misreads an exactly constant arm as
            warnings.simplefilter("ignore", RuntimeWarning)  # "catastrophic cancellation"
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def permutation_p(a: np.ndarray, b: np.ndarray, exact_limit: int = EXACT_LIMIT,
                  rounds: int = ROUNDS, seed: int = 0) -> tuple[float, bool]:
    """Two-sided permutation test of the difference of means over seeds: the share of the ways
    to split the pooled values into groups of sizes n_a and n_b whose |mean difference| is at
    least the observed one (the observed split included). Every one of the C(n_a+n_b, n_a)
    splits is enumerated when there are at most `exact_limit`; else `rounds` random splits
    (seeded) give p = (1 + hits) / (1 + rounds) (Phipson & Smyth, never 0).
    Returns (p, exact)."""
    pooled = np.concatenate([a, b])
    n, k = pooled.size, a.size
    total = pooled.sum()
    observed = abs(a.mean() - b.mean())
    tolerance = 1e-9 * float(np.abs(pooled).max())  # ties up to rounding count as extreme
    exact = math.comb(n, k) <= exact_limit
    if exact:
        group_sums = pooled[np.array(list(combinations(range(n), k)))].sum(axis=1)
    else:
        shuffled = np.random.default_rng(seed).permuted(np.tile(pooled, (rounds, 1)), axis=1)
        group_sums = shuffled[:, :k].sum(axis=1)
    differences = np.abs(group_sums / k - (total - group_sums) / (n - k))
    hits = int(np.count_nonzero(differences >= observed - tolerance))
    return (hits / group_sums.size, True) if exact else ((1 + hits) / (1 + rounds), False)


def smallest_permutation_p(n_a: int, n_b: int) -> float:
    """The smallest p a two-sided permutation test can give with n_a and n_b seeds, reached
    when the arms do not overlap at all: 1/C(n_a+n_b, n_a), or 2/C(2n, n) for equal sizes
    (the mirrored split is as extreme). 1/3 for 2 vs 2 seeds, 1/10 for 3 vs 3, 1/35 for 4 vs 4."""
    return min(1.0, (2 if n_a == n_b else 1) / math.comb(n_a + n_b, n_a))


def seeds_needed(alpha: float = 0.05, comparisons: int = 1) -> int:
    """The fewest seeds per arm with which a permutation test can be significant after Holm
    over `comparisons`: the smallest n with comparisons · 2/C(2n, n) < alpha."""
    n = 2
    while comparisons * smallest_permutation_p(n, n) >= alpha:
        n += 1
    return n


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order: sort ascending, multiply the i-th
    smallest (rank i = 0, 1, ...) by m - i, take the running maximum, clip to 1."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


@dataclass(frozen=True)
class Comparison:
    """One arm against the best arm of a metric."""

    arm: str
    best: str
    difference: float  # arm mean - best mean; NaN when the arm has no values
    p_raw: float | None  # None when not testable
    p_holm: float | None  # Holm-corrected over the `family_size` testable comparisons
    significant: bool  # p_holm < alpha
    reason: str  # why not testable, or what was special (dropped NaNs, constant arms); or ""
    method: str  # "Welch", "exact permutation" or "Monte Carlo permutation"
    n_arm: int
    n_best: int
    family_size: int  # testable comparisons the Holm correction ran over
    alpha: float
    df: float | None = None  # Welch-Satterthwaite degrees of freedom (Welch only)
    p_floor: float | None = None  # smallest raw p a permutation test can give at these n
    p_floor_holm: float | None = None  # a lower bound of p_holm for a permutation test

    @property
    def testable(self) -> bool:
        return self.p_raw is not None

    @property
    def indistinguishable(self) -> bool:
        """Not shown to differ from the best (including: could not be tested)."""
        return not self.significant

    @property
    def underpowered(self) -> bool:
        """Too few seeds for a permutation test to reach alpha after Holm: no difference,
        however large, could be significant without assuming normal noise."""
        return self.p_floor_holm is not None and self.p_floor_holm >= self.alpha


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def pick_best(summaries: Sequence[ArmSummary], higher_is_better: bool) -> ArmSummary | None:
    """The arm with the best mean (the first on ties) among arms with at least two seeds, as
    nothing can be tested against a single seed; among all arms with values if none has two.
    None if no arm has values."""
    candidates = ([summary for summary in summaries if summary.n >= 2]
                  or [summary for summary in summaries if summary.n])
    if not candidates:
        return None
    pick = max if higher_is_better else min
    return pick(candidates, key=lambda summary: summary.mean)


def _test_pair(arm: ArmSummary, best: ArmSummary, test: str, exact_limit: int, rounds: int,
               seed: int) -> tuple[float | None, str, str, float | None]:
    """(p, method, reason, Welch df) of one arm against the best; p is None if not testable."""
    for summary, role in ((arm, arm.name), (best, f"{best.name} (best)")):
        if summary.n == 0:
            return None, "", f"no finite values in {role}", None
        if summary.n == 1:
            return None, "", f"one seed in {role}: no spread to test against", None
    a, b = np.array(arm.values), np.array(best.values)
    if test == "permutation":
        p, exact = permutation_p(a, b, exact_limit, rounds, seed)
        return p, "exact permutation" if exact else "Monte Carlo permutation", "", None
    if arm.std == 0 and best.std == 0:
        if arm.mean == best.mean:
            return 1.0, "Welch", "both arms constant and equal: no difference", None
        return None, "Welch", (f"no spread: both arms constant ({arm.mean:g} vs {best.mean:g}), "
                               "Welch's t is undefined; use the permutation test"), None
    return welch_p(a, b), "Welch", "", welch_df(a, b)


def compare_to_best(arms: Mapping[str, Sequence[float]], higher_is_better: bool,
                    alpha: float = 0.05, test: Test = "welch", *,
                    exact_limit: int = EXACT_LIMIT, rounds: int = ROUNDS,
                    seed: int = 0) -> list[Comparison]:
    """Every arm against the arm with the best mean (highest if `higher_is_better`, else
    lowest; see `pick_best`): two-sided Welch t-test (`test="welch"`) or permutation test over
    seeds of the difference of means (`test="permutation"`), then Holm-Bonferroni over the
    testable comparisons. Non-finite values are dropped; arms with fewer than two seeds, and
    (for Welch) two constant arms with different values, are not testable rather than given
    an invented p-value. One Comparison per arm other than the best, in the order of `arms`."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, not {test!r}")
    summaries = [summarize(name, values) for name, values in arms.items()]
    best = pick_best(summaries, higher_is_better)
    if best is None:
        return []
    others = [summary for summary in summaries if summary is not best]
    tested = [_test_pair(arm, best, test, exact_limit, rounds, seed) for arm in others]
    raw = [p for p, *_ in tested if p is not None]
    adjusted = iter(holm(raw))
    m = len(raw)
    floors = {arm.name: smallest_permutation_p(arm.n, best.n)
              for arm, (p, *_) in zip(others, tested, strict=True) if p is not None}
    family_floor = m * min(floors.values(), default=1.0)
    comparisons = []
    for arm, (p, method, reason, df) in zip(others, tested, strict=True):
        p_holm = next(adjusted) if p is not None else None
        dropped = [f"dropped {s.dropped} non-finite value{_s(s.dropped)} of {s.name}"
                   for s in (arm, best) if s.dropped]
        floor = floors.get(arm.name)
        comparisons.append(Comparison(
            arm=arm.name, best=best.name,
            difference=arm.mean - best.mean if arm.n else math.nan,
            p_raw=p, p_holm=p_holm, significant=p_holm is not None and p_holm < alpha,
            reason="; ".join([text for text in (reason, *dropped) if text]),
            method=method, n_arm=arm.n, n_best=best.n, family_size=m, alpha=alpha, df=df,
            p_floor=floor,
            p_floor_holm=min(1.0, max(floor, family_floor)) if floor is not None else None))
    return comparisons


def format_p(p: float) -> str:
    """'p < 0.001', 'p = 0.003' (three decimals below 0.1), 'p = 0.41' (two decimals above)."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def format_difference(value: float) -> str:
    """Three significant digits, but no exponent for large values: 5.7, 0.0112, 10336."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _seed_counts(comparisons: Sequence[Comparison]) -> str:
    counts = sorted({n for c in comparisons for n in (c.n_arm, c.n_best)})
    return f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def describe(comparisons: Sequence[Comparison], metric: str,
             higher_is_better: bool) -> list[str]:
    """One sentence per comparison, e.g.
    'FID (lower is better): adaptive vs add (best): not significant, p = 0.41 (Welch,
    Holm-corrected over 2 comparisons)', and, when there are too few seeds for any difference
    to be significant with a permutation test, a last sentence saying so and how many seeds
    per arm would be needed."""
    subject = f"{metric} ({'higher' if higher_is_better else 'lower'} is better)"
    lines = []
    for c in comparisons:
        head = f"{subject}: {c.arm} vs {c.best} (best): "
        if c.p_raw is None or c.p_holm is None:
            lines.append(head + f"not testable: {c.reason}")
            continue
        verdict = (f"worse by {format_difference(abs(c.difference))}" if c.significant
                   else "not significant")
        at = "" if c.alpha == 0.05 else f", α = {c.alpha:g}"
        how = (f"{c.method}, Holm-corrected over {c.family_size} "
               f"comparison{_s(c.family_size)}{at}")
        lines.append(head + f"{verdict}, {format_p(c.p_holm)} ({how})"
                     + (f"; {c.reason}" if c.reason else ""))
    weak = [c for c in comparisons if c.underpowered]
    if weak:
        floor = min(c.p_floor for c in weak if c.p_floor is not None)
        floor_holm = min(c.p_floor_holm for c in weak if c.p_floor_holm is not None)
        m, alpha = weak[0].family_size, weak[0].alpha
        after = (f" ({floor_holm:.2g} after Holm over {m} "
                 "comparisons)" if floor_holm > floor else "")
        welch = [c.df for c in weak if c.df is not None and math.isfinite(c.df)]
        caveat = ("" if not welch else
                  f" unless one trusts Welch's t on {min(welch):.1f} degrees of freedom to "
                  "model the seed noise as normal")
        lines.append(
            f"{subject}: too few seeds: with {_seed_counts(weak)} seeds per arm a permutation "
            f"test cannot go below p = {floor:.2g}{after}, so no difference can be significant "
            f"at α = {alpha:g}{caveat}; run at least {seeds_needed(alpha, m)} seeds per arm.")
    return lines
