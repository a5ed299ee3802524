"""Where a learning-curve run trains to, and where it stops, without changing what a measured point is.

``cost`` (a run key) makes a settings search fair in CPU time: a setting whose training step takes ``cost`` times
the reference setting's (measured by ``benchmarks/sequence_format.py``) trains ``round(point / cost)`` sequences at
each point, so points keep the reference's numbers (equal CPU time) and pair run with run. A fixed count is used
rather than a CPU-time stop so that a run gives the same result on every machine.

``stop_when_flat_from`` (a comparison key) ends a run's curve at the first point from there on whose validation
NDCG@10 is not above every earlier point's, the untrained one included ("validate after every full pass until
validation stops rising"). It is a rule on point estimates, not a test: the report says where it fired.
"""

from __future__ import annotations

FLAT_METRIC = "ndcg@10"


def trained_sequences(point: int, cost: float | None) -> int:
    """The sequences a run with step-time ratio ``cost`` trains at ``point`` (the reference's sequences)."""
    return point if cost is None or point == 0 else max(1, round(point / cost))


def flat_stop(points: list[dict], start: int | None) -> int | None:
    """The point at which :data:`FLAT_METRIC` first failed to rise above every earlier point, at or after
    ``start``; None while it keeps rising (or without a rule)."""
    if start is None:
        return None
    best = None
    for point in sorted(points, key=lambda p: p["sequences"]):
        value = point["stats"][FLAT_METRIC]["mean"]
        if best is not None and point["sequences"] >= start and value <= best:
            return point["sequences"]
        best = value if best is None else max(best, value)
    return None


def expected_points(points: list[int], stop: int | None) -> list[int]:
    """The points a finished run has: all of them, or those up to where the flat rule stopped it."""
    return [p for p in points if stop is None or p <= stop]


def finished(measured: list[dict], points: list[int], start: int | None) -> bool:
    """Whether a run's measured points are all it needs (:func:`expected_points` under the rule from ``start``)."""
    return set(expected_points(points, flat_stop(measured, start))) <= {p["sequences"] for p in measured}


def stop_note(run: str, stop: int, start: int) -> str:
    """One line saying where and why a run's curve ended early."""
    return (f"{run} stopped at {stop:,} sequences: its validation NDCG@10 there was not above its best earlier point "
            f"(stop_when_flat_from: {start}; a rule on point estimates, not a test)")
