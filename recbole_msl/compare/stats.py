"""Summaries over seeds and paired significance tests over users.

Runs of one comparison are evaluated on the same test rows, so a run and the
reference run can be compared user by user: the difference of their per-user
metric values is tested with a paired bootstrap (resampling users) and a paired
t-test. With several seeds each user's value is first averaged over the seeds
both runs finished.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ALPHA = 0.05


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
    bootstrap_p: float
    t_test_p: float
    ci_low: float  # 95% bootstrap interval of the mean difference
    ci_high: float
    detectable: float  # the smallest mean difference this test finds with 80% power (two-sided, alpha 0.05)
    detectable_relative: float  # the same, relative to the reference's mean; nan when that is 0

    @property
    def significant(self) -> bool:
        return self.bootstrap_p < ALPHA


def paired_test(run_values, reference_values, metric: str, resamples: int = 10000, seed: int = 0) -> PairedTest:
    """Two-sided paired bootstrap and paired t-test of mean(run - reference) over the same users."""
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
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    # two-sided: twice the smaller tail of the resampled means around zero (add-one smoothing)
    tail = min(np.sum(means <= 0), np.sum(means >= 0))
    boot_p = min(1.0, 2 * (tail + 1) / (resamples + 1))
    t_p = float(stats.ttest_rel(run_values, reference_values).pvalue) if n > 1 else 1.0
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedTest(metric, n, mean_run, mean_ref, gain, float(boot_p),
                      1.0 if math.isnan(t_p) else t_p, float(low), float(high), detectable, detectable_relative)


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
