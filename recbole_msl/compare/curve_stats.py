"""What a learning curve can claim: each point's mean and standard error over users, paired tests of every run
against the reference run and of each run's last point against its first (one Holm family), and how precise
the last point is."""

from __future__ import annotations

import math

import numpy as np

from .stats import ALPHA, holm, paired_test
from .user_metrics import per_user_metrics

CURVE_METRICS = ("ndcg@10", "hit@10")


def point_stats(hits: dict, metrics=CURVE_METRICS) -> dict:
    """Mean and standard error over users of each metric, from the recorded ranked hits."""
    names = sorted({m.split("@")[0] for m in metrics})
    ks = sorted({int(m.split("@")[1]) for m in metrics})
    values = per_user_metrics(hits, names, ks)
    out = {}
    for metric in metrics:
        v = values[metric]
        out[metric] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0}
    out["users"] = len(hits["users"])
    return out


def _values_by_row(point: dict, metric: str) -> tuple[list[str], np.ndarray]:
    """A point's per-row values of ``metric``, ordered by (user, target) so two runs pair row by row
    (a user can own several rows in sliding-window splits)."""
    hits = point["valid_hits"]
    name, k = metric.split("@")
    values = per_user_metrics(hits, [name], [int(k)])[metric]
    targets = hits.get("targets") or [""] * len(hits["users"])
    keys = [f"{u}\t{t}" for u, t in zip(hits["users"], targets)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [keys[i] for i in order], values[order]


def _paired(point: dict, reference_point: dict, metric: str) -> dict | None:
    """Paired test of ``point`` against ``reference_point`` over their common users (None without both)."""
    if "valid_hits" not in point or "valid_hits" not in reference_point:
        return None
    users, values = _values_by_row(point, metric)
    ref_users, ref_values = _values_by_row(reference_point, metric)
    if users != ref_users:  # different samples cannot be paired; the report says so instead of guessing
        return {"metric": metric, "error": "different validation users"}
    test = paired_test(values, ref_values, metric)
    return {"metric": metric, "users": test.n_users, "difference": test.difference,
            "ci": [test.ci_low, test.ci_high], "p": test.p, "t_test_p": test.t_test_p, "flips": test.flips,
            "detectable": test.detectable,
            "detectable_relative": None if math.isnan(test.detectable_relative) else test.detectable_relative}


def _same_measurement(point: dict, run: str, other: dict, other_run: str) -> bool:
    """Whether two points are one measurement: a run's point 0 copied from the other run (``measured_in``)
    pairs with the original user for user, so comparing them tests nothing."""
    return _source(point, run) == _source(other, other_run)


def _source(point: dict, run: str) -> str:
    """The run whose evaluation produced ``point``."""
    return point.get("measured_in", run)


def curve_tests(curves: list[dict], reference: str | None = None) -> list[dict]:
    """What a curve can claim, as paired tests over the same validation users: every run against the
    reference run (the first curve unless named) at each point both reached, on the same seed, and each
    run's last point against its first (did it learn beyond the first point?), and each run that decodes another's
    adapter (:mod:`.curve_shared`) against that run at the point they share. All of them are one family:
    each gets ``p_holm``, Holm's adjustment over the family, and ``significant`` from it. A pair that is one
    measurement (a shared point 0) is listed as such, with no test, outside the family."""
    if not curves:
        return []
    reference = reference if reference in {c["run"] for c in curves} else curves[0]["run"]
    tests = []
    for curve in curves:
        points = {p["sequences"]: p for p in curve["points"]}
        ref = next((c for c in curves if c["run"] == reference and c["seed"] == curve["seed"]), None)
        if ref is not None and curve is not ref:
            ref_points = {p["sequences"]: p for p in ref["points"]}
            for sequences in sorted(set(points) & set(ref_points)):
                if _same_measurement(points[sequences], curve["run"], ref_points[sequences], reference):
                    for metric in CURVE_METRICS:
                        tests.append({"kind": "run vs reference", "run": curve["run"], "against": reference,
                                      "seed": curve["seed"], "sequences": sequences, "metric": metric,
                                      "same_measurement": True,
                                      "measured_in": _source(points[sequences], curve["run"])})
                    continue
                for metric in CURVE_METRICS:
                    result = _paired(points[sequences], ref_points[sequences], metric)
                    if result:
                        tests.append({"kind": "run vs reference", "run": curve["run"], "against": reference,
                                      "seed": curve["seed"], "sequences": sequences, **result})
        tests += _decoding_tests(curve, curves, reference)
        ordered = [points[s] for s in sorted(points)]
        if len(ordered) > 1:
            for metric in CURVE_METRICS:
                result = _paired(ordered[-1], ordered[0], metric)
                if result:
                    tests.append({"kind": "last vs first point", "run": curve["run"], "against": curve["run"],
                                  "seed": curve["seed"], "sequences": ordered[-1]["sequences"],
                                  "from_sequences": ordered[0]["sequences"], **result})
    family = [t for t in tests if "p" in t]
    for test, adjusted in zip(family, holm([t["p"] for t in family])):
        test["p_holm"], test["significant"] = adjusted, adjusted < ALPHA
    return tests


def _decoding_tests(curve: dict, curves: list[dict], reference: str) -> list[dict]:
    """A run that decodes another run's adapter (:mod:`.curve_shared`) against that run at the point they share:
    one adapter, two decodings. None when the other run is the reference (that pair is tested already)."""
    source, at = curve.get("training_shared_with"), curve.get("shared_at")
    origin = next((c for c in curves if c["run"] == source and c["seed"] == curve["seed"]), None)
    if source is None or source == reference or origin is None:
        return []
    mine = next((p for p in curve["points"] if p["sequences"] == at), None)
    theirs = next((p for p in origin["points"] if p["sequences"] == at), None)
    if mine is None or theirs is None:
        return []
    tests = []
    for metric in CURVE_METRICS:
        result = _paired(mine, theirs, metric)
        if result:
            tests.append({"kind": "decoding vs its training run", "run": curve["run"], "against": source,
                          "seed": curve["seed"], "sequences": at, **result})
    return tests


def users_for_relative_se(rate: float, fraction: float = 0.2) -> int | None:
    """Users needed for the binomial standard error of a hit rate to be at most ``fraction`` of the rate:
    sqrt(p (1 - p) / n) <= fraction * p  <=>  n >= (1 - p) / (fraction^2 p)."""
    if not 0 < rate < 1:
        return None
    return math.ceil((1 - rate) / (fraction ** 2 * rate))


def curve_precision(curves: list[dict]) -> list[dict]:
    """Each run's Hit@10 standard error relative to its value at the last point, and the users that a
    ratio of one fifth needs (the precision a learning curve should have to show a trend)."""
    out = []
    for curve in curves:
        if not curve["points"]:
            continue
        last = max(curve["points"], key=lambda p: p["sequences"])
        hit = last["stats"]["hit@10"]
        out.append({"run": curve["run"], "seed": curve["seed"], "sequences": last["sequences"],
                    "users": last["stats"]["users"], "hit@10": hit["mean"], "se": hit["se"],
                    "se_over_value": hit["se"] / hit["mean"] if hit["mean"] else None,
                    "users_for_one_fifth": users_for_relative_se(hit["mean"])})
    return out


def validation_estimate(curves: list[dict]) -> float | None:
    """The CPU seconds of one validation in records that did not time their validations: the first untrained point
    measured by its own run (a validation and nothing else)."""
    return next((p["cpu_s"] for c in curves for p in c["points"] if p["sequences"] == 0 and "measured_in" not in p),
                None)


def training_cpu_seconds(points: list[dict], estimate: float | None = None) -> list[float | None]:
    """Each point's CPU seconds of training alone: its ``cpu_s`` (everything so far) less the validations so far.
    A validation's own time is its ``valid_cpu_s`` (recorded since 2026-12-07); for older records each validation
    is taken to cost what an untrained point cost (``estimate``, see :func:`validation_estimate`), and without
    either the value is None. A point 0 copied from another run (``measured_in``) cost this run nothing; a point
    measured on another run's adapter (``training_cpu_s``, :mod:`.curve_shared`) stands on that run's training."""
    ordered = sorted(points, key=lambda p: p["sequences"])
    own_zero = next((p for p in ordered if p["sequences"] == 0 and "measured_in" not in p), None)
    estimate = own_zero["cpu_s"] if own_zero is not None else estimate
    spent, result = 0.0, {}
    for point in ordered:
        if "measured_in" in point or "training_cpu_s" in point:  # another run's point 0, or its training
            result[id(point)] = point.get("training_cpu_s", 0.0)
            continue
        validation = point.get("valid_cpu_s", estimate if point["sequences"] else point.get("cpu_s"))
        if validation is None or spent is None:
            spent = None
        else:
            spent += validation
        result[id(point)] = None if spent is None else max(point["cpu_s"] - spent, 0.0)
    return [result[id(p)] for p in points]
