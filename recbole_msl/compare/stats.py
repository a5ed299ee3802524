"""Summaries over seeds and paired significance tests over users.

Runs of one comparison are evaluated on the same test rows, so a run and the
reference run can be compared user by user. The p-value is a paired sign-flip
permutation test of the mean per-user difference: under "no difference" each
user's two values are exchangeable, so flipping the sign of a difference is as
likely as not, and the p-value is how often the flipped mean is as far from 0 as
the observed one (a test under the null, unlike a p read off the bootstrap's
percentiles, which came out about 0.01 too small in borderline cases). The
bootstrap over users is kept for the 95% interval only; the paired t-test's p
is kept beside it. A report runs many such tests, so each p also gets a Holm
adjustment over the report's family (:func:`holm`), and "significant" follows
that adjusted p. With several seeds each user's value is first averaged over
the seeds both runs finished (the test is still over users, not over seeds).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ALPHA = 0.05
EXACT_MAX = 20  # up to this many non-zero differences the sign flips are enumerated (2^20 sums)
FLIPS = 10000  # random sign flips beyond that


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std


@dataclasses.dataclass
class PairedTest:
    metric: str
    n_users: int
    mean_run: float
    mean_reference: float
    relative_gain: float  # (run - reference) / reference; nan when the reference is 0
    p: float  # two-sided paired sign-flip permutation test of the mean difference
    t_test_p: float  # two-sided paired t-test, for comparison
    ci_low: float  # 95% bootstrap interval of the mean difference (percentile, users resampled)
    ci_high: float
    detectable: float  # the smallest mean difference this test finds with 80% power (two-sided, alpha 0.05)
    detectable_relative: float  # the same, relative to the reference's mean; nan when that is 0
    flips: int = 0  # random sign flips behind p; 0 when p is exact (every sign pattern enumerated)
    p_holm: float | None = None  # p adjusted over the report's family of tests (set by the report)

    @property
    def difference(self) -> float:
        return self.mean_run - self.mean_reference

    @property
    def significant(self) -> bool:
        """Follows the Holm-adjusted p once the report has set it, the raw p before."""
        return (self.p if self.p_holm is None else self.p_holm) < ALPHA


def sign_flip_p(diff, flips: int = FLIPS, seed: int = 0, exact_max: int = EXACT_MAX) -> tuple[float, int]:
    """Two-sided p of a paired sign-flip permutation test of mean(diff) = 0; returns (p, flips used).

    Zero differences stay zero under a flip, so only the m non-zero ones matter: with m <= ``exact_max``
    all 2^m sign patterns are enumerated (flips used: 0, the p is exact); otherwise ``flips`` random
    patterns are drawn (seeded) and p = (count + 1) / (flips + 1), which counts the observed pattern
    and so is never 0 and keeps the test's size at or below alpha."""
    diff = np.asarray(diff, dtype=np.float64)
    diff = diff[diff != 0]
    m = diff.size
    if m == 0:
        return 1.0, 0
    observed = abs(float(diff.sum()))
    tolerance = 1e-9 * float(np.abs(diff).sum())  # equal sums must count as "as extreme" despite rounding
    threshold = observed - tolerance
    if threshold <= 0:
        return 1.0, 0
    if m <= exact_max:
        # every sign pattern's sum is a + b, a from the first half's 2^h sums and b from the second's;
        # counting a >= threshold - b and a <= -threshold - b in the sorted first half avoids the 2^m table
        half = m // 2
        first, second = _pattern_sums(diff[:half]), _pattern_sums(diff[half:])
        first.sort()
        above = first.size - np.searchsorted(first, threshold - second, side="left")
        below = np.searchsorted(first, -threshold - second, side="right")
        return float((above.sum() + below.sum()) / 2.0 ** m), 0
    rng = np.random.default_rng(seed)
    total, count, chunk = float(diff.sum()), 0, max(1, 2_000_000 // m)
    for start in range(0, flips, chunk):
        size = min(chunk, flips - start)
        # random bits, 8 per byte drawn; a set bit keeps the difference, a clear one flips it
        bits = np.unpackbits(rng.integers(0, 256, size=(size, (m + 7) // 8), dtype=np.uint8), axis=1)[:, :m]
        sums = 2.0 * (bits @ diff) - total
        count += int(np.sum(np.abs(sums) >= observed - tolerance))
    return (count + 1) / (flips + 1), flips


def _pattern_sums(values: np.ndarray) -> np.ndarray:
    """The sum of ``values`` under each of the 2^len sign patterns."""
    sums = np.zeros(1)
    for value in values:
        sums = np.concatenate([sums + value, sums - value])
    return sums


def holm(pvalues) -> list[float | None]:
    """Holm's step-down adjustment: the k-th smallest of m p-values times (m - k + 1), kept monotone and
    at most 1; it holds the chance of any false "significant" in the family at alpha. None stays None
    (a comparison that could not be tested is not in the family)."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p))
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_test(run_values, reference_values, metric: str, resamples: int = 10000, seed: int = 0,
                flips: int = FLIPS) -> PairedTest:
    """Permutation p, paired t-test p and bootstrap interval of mean(run - reference) over the same users."""
    from scipy import stats

    run_values = np.asarray(run_values, dtype=np.float64)
    reference_values = np.asarray(reference_values, dtype=np.float64)
    if run_values.shape != reference_values.shape or run_values.ndim != 1:
        raise ValueError("paired values must be two vectors over the same users")
    diff = run_values - reference_values
    n = diff.size
    mean_run, mean_ref = float(run_values.mean()), float(reference_values.mean())
    gain = (mean_run - mean_ref) / mean_ref if mean_ref != 0 else float("nan")
    detectable = minimal_detectable_difference(diff)
    detectable_relative = detectable / mean_ref if mean_ref != 0 else float("nan")
    if n == 0 or not np.any(diff):
        return PairedTest(metric, n, mean_run, mean_ref, gain, 1.0, 1.0, 0.0, 0.0, detectable, detectable_relative)
    p, used = sign_flip_p(diff, flips=flips, seed=seed)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    t_p = float(stats.ttest_rel(run_values, reference_values).pvalue) if n > 1 else 1.0
    return PairedTest(metric, n, mean_run, mean_ref, gain, float(p), 1.0 if math.isnan(t_p) else t_p,
                      float(low), float(high), detectable, detectable_relative, used)


def stored_p(test: dict) -> float:
    """The raw p of a stored test: ``p`` now, ``bootstrap_p`` in reports written before the permutation test."""
    return test["p"] if "p" in test else test["bootstrap_p"]


def stored_adjusted_p(test: dict) -> float:
    """The Holm-adjusted p of a stored test; an old report without one has only its raw p."""
    adjusted = test.get("p_holm")
    return stored_p(test) if adjusted is None else adjusted


def minimal_detectable_difference(diff, power: float = 0.8, alpha: float = ALPHA) -> float:
    """The mean per-user difference a two-sided paired test at ``alpha`` finds with probability ``power``:
    (z_{1-alpha/2} + z_{power}) x sd(differences) / sqrt(n), the normal approximation (2.80 x the standard
    error at 80% power and alpha 0.05). With no spread between the runs yet, the sd of a single hit among
    the users stands in, so the figure is never an empty 0."""
    from scipy import stats

    diff = np.asarray(diff, dtype=np.float64)
    n = diff.size
    if n < 2:
        return float("nan")
    sd = float(diff.std(ddof=1)) or math.sqrt(1.0 / n)
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd / math.sqrt(n))
