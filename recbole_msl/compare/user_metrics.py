"""Each test user's metric values, recomputed from the ranked hits a run recorded.

The hits come from :func:`recbole_msl.evaluation.records.test_hits`; the values are computed with
RecBole's own metric classes, so they average to RecBole's figures.
"""

from __future__ import annotations

import inspect

import numpy as np


def decode_hits(encoded: dict) -> tuple[np.ndarray, np.ndarray]:
    hits = np.array([[c == "1" for c in row] for row in encoded["hits"]], dtype=bool)
    return hits.reshape(len(encoded["hits"]), -1), np.asarray(encoded["pos_len"], dtype=np.int64)


def per_user_metrics(encoded: dict, metrics, topk, decimal_place: int = 4) -> dict[str, np.ndarray]:
    """``{'ndcg@10': values per user, ...}`` for every top-k metric among ``metrics``.

    Uses RecBole's metric classes (``metric_info``), so the mean over users is RecBole's figure.
    """
    from recbole.evaluator.base_metric import TopkMetric
    from recbole.evaluator.register import metrics_dict

    hits, pos_len = decode_hits(encoded)
    config = {"topk": list(topk), "metric_decimal_place": decimal_place}
    values = {}
    for name in metrics:
        metric_class = metrics_dict.get(str(name).lower())
        if metric_class is None or not issubclass(metric_class, TopkMetric):
            continue  # aggregate metrics (coverage, ...) have no per-user value
        metric = metric_class(config)
        wants_pos_len = len(inspect.signature(metric.metric_info).parameters) == 2
        table = metric.metric_info(hits, pos_len) if wants_pos_len else metric.metric_info(hits)
        for k in topk:
            values[f"{str(name).lower()}@{k}"] = np.asarray(table[:, k - 1], dtype=np.float64)
    return values


def hits_at(encoded: dict, k: int) -> np.ndarray:
    """Per test row, whether the target is among the first ``k`` items ranked (Hit@k of each row)."""
    hits, _ = decode_hits(encoded)
    return hits[:, :k].any(axis=1)


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (nan, nan with no trials)."""
    if trials == 0:
        return float("nan"), float("nan")
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
