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
