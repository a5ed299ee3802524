"""The paired test's p-value and the Holm adjustment: checked by simulation, because a p-value is only
worth its size under "no difference" (the old p read off the bootstrap's percentiles was too small)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recbole_msl.compare.stats import holm, paired_test, sign_flip_p

REPEATS = 1000


def _ndcg_like(n: int, rate: float, rng) -> np.ndarray:
    """Per-user NDCG@10 of a single target: 0 for a miss (most users), 1 / log2(rank + 1) for a hit."""
    hit = rng.random(n) < rate
    return np.where(hit, 1.0 / np.log2(rng.integers(1, 11, n) + 1.0), 0.0)


def _null_pairs(kind: str, rng):
    """Two runs' per-user values drawn from the same distribution (so any difference is chance)."""
    if kind == "ndcg, 943 users, 95% zeros":  # the ml-100k reports' case: random sign flips
        return _ndcg_like(943, 0.05, rng), _ndcg_like(943, 0.05, rng)
    if kind == "ndcg, 200 users, 95% zeros":  # about 19 users differ: mostly the exact enumeration
        return _ndcg_like(200, 0.05, rng), _ndcg_like(200, 0.05, rng)
    if kind == "hit, 943 users, 95% zeros":  # 0/1 values: many tied sums
        return (rng.random(943) < 0.05).astype(float), (rng.random(943) < 0.05).astype(float)
    if kind == "skewed, 40 users":
        return rng.exponential(1.0, 40), rng.exponential(1.0, 40)
    return rng.normal(0.0, 1.0, 10), rng.normal(0.0, 1.0, 10)  # "normal, 10 users": exact, every pattern


def _old_bootstrap_p(diff: np.ndarray, rng, resamples: int = 2000) -> float:
    """The rule the reports used before: twice the smaller tail of the bootstrap means around 0."""
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    return min(1.0, 2 * (min(np.sum(means <= 0), np.sum(means >= 0)) + 1) / (resamples + 1))


@pytest.mark.parametrize("kind", ["ndcg, 943 users, 95% zeros", "ndcg, 200 users, 95% zeros",
                                  "hit, 943 users, 95% zeros", "skewed, 40 users", "normal, 10 users"])
def test_p_below_005_in_about_5_percent_of_repeats_without_a_difference(kind):
    """1000 repeats with no true difference: p < 0.05 should happen about 5% of the time. The band 2.5%-8%
    is about 3.5 binomial standard errors either side, so a test that is too liberal (or far too
    conservative) fails it; the repeats are seeded, so the check is deterministic."""
    rng = np.random.default_rng(29)
    rejected = 0
    for repeat in range(REPEATS):
        run, reference = _null_pairs(kind, rng)
        rejected += paired_test(run, reference, "ndcg@10", resamples=50, flips=2000, seed=repeat).p < 0.05
    assert 0.025 <= rejected / REPEATS <= 0.08, rejected


def test_the_old_percentile_bootstrap_p_fails_the_same_check():
    """Null repeats with 8 users: the old rule says p < 0.05 in about 12% of them, more than twice the
    nominal rate, while the permutation p stays within the band."""
    rng = np.random.default_rng(7)
    old = new = 0
    for repeat in range(REPEATS):
        diff = rng.normal(0.0, 1.0, 8)
        old += _old_bootstrap_p(diff, rng) < 0.05
        new += sign_flip_p(diff, seed=repeat)[0] < 0.05
    assert old / REPEATS > 0.08 and 0.025 <= new / REPEATS <= 0.08, (old, new)


def test_a_real_difference_gives_a_small_p():
    """Three times the hit rate over 943 users (5% against 15%): found, with p no smaller than one flip allows."""
    rng = np.random.default_rng(1)
    test = paired_test(_ndcg_like(943, 0.15, rng), _ndcg_like(943, 0.05, rng), "ndcg@10")
    assert 1 / 10001 <= test.p < 0.001 and test.flips == 10000 and test.ci_low > 0 and test.t_test_p < 0.001
    assert test.significant  # no Holm p yet: the raw p decides
    test.p_holm = 0.2
    assert not test.significant  # once the report adjusts it, the adjusted p decides


def test_the_exact_p_counts_every_sign_pattern():
    """Up to 20 non-zero differences the p is exact: equal to brute force over all 2^m patterns (ties
    included, zeros ignored), and a random-flip estimate of it lands close."""
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 9, 12):
        diff = np.concatenate([rng.choice([-1.0, -0.5, 0.5, 1.0, 0.63], m), np.zeros(4)])
        observed = abs(diff.sum())
        brute = np.mean([abs(np.dot(signs, diff[:m])) >= observed - 1e-12
                         for signs in itertools.product([1, -1], repeat=m)])
        p, flips = sign_flip_p(diff)
        assert (p, flips) == (pytest.approx(brute, abs=1e-12), 0)
    diff = rng.normal(0.5, 1.0, 18)
    exact, _ = sign_flip_p(diff)
    estimate, flips = sign_flip_p(diff, exact_max=0, flips=20000)
    assert flips == 20000 and abs(estimate - exact) < 0.01
    assert sign_flip_p(np.zeros(5)) == (1.0, 0) and sign_flip_p(np.array([0.0, 0.3, -0.3]))[0] == 1.0


def test_holm_adjustment():
    """The k-th smallest of m p-values times m - k + 1, never decreasing along the order, at most 1;
    untested comparisons (None) are outside the family."""
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3, None, 0.001, 0.9]) == [pytest.approx(0.6), None, pytest.approx(0.003), pytest.approx(0.9)]
    assert holm([0.02]) == [0.02] and holm([]) == []
    assert holm([0.5, 0.6]) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_a_gain_from_a_report_written_before_the_permutation_test_still_formats():
    """Old report JSONs have ``bootstrap_p`` and no ``p``, ``p_holm`` or ``difference``."""
    from recbole_msl.compare.report_format import fmt_gain

    old = {"relative_gain": 0.33, "mean_run": 0.0147, "mean_reference": 0.0111, "bootstrap_p": 0.062,
           "significant": False, "detectable": 0.0058, "detectable_relative": 0.52}
    assert fmt_gain(old) == "+33.0% (+0.0036, p=0.062, not significant; detectable at 80% power: 0.0058 = 52%)"
    new = {**old, "p": 0.0712, "p_holm": 0.4272, "difference": 0.00369}
    assert fmt_gain(new) == ("+33.0% (+0.0037, p=0.071, Holm p=0.427, not significant; detectable at 80% power: "
                             "0.0058 = 52%)")
