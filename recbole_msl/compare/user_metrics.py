"""Each test user's ranked hits, kept so that two runs can be compared user by user.

RecBole averages its top-k metrics over users and throws the per-user values away.
A paired significance test needs them, so the test pass's ``rec.topk`` matrix (for
each evaluated row: a 0/1 hit flag per rank, then the number of positives) is
captured as it goes to the evaluator, and per-user metric values are recomputed
from it with RecBole's own metric classes, so they average to RecBole's figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect

import numpy as np


@contextlib.contextmanager
def capture_topk(trainer):
    """Within the block, remember the ``rec.topk`` matrix of every evaluation the trainer runs."""
    captured = []
    evaluate = trainer.evaluator.evaluate

    def remembering(struct):
        matrix = struct._data_dict.get("rec.topk")
        if matrix is not None:
            captured.append(matrix.detach().cpu().numpy().astype(np.int64))
        return evaluate(struct)

    trainer.evaluator.evaluate = remembering
    try:
        yield captured
    finally:
        trainer.evaluator.evaluate = evaluate


def eval_rows(eval_data) -> tuple[list[str], list[str]]:
    """(user token, target item token) of each evaluated row, in evaluation order."""
    dataset = eval_data._dataset
    uid, iid = dataset.uid_field, dataset.iid_field
    users = dataset.id2token(uid, dataset.inter_feat[uid].numpy())
    items = dataset.id2token(iid, dataset.inter_feat[iid].numpy())
    return [str(u) for u in users], [str(i) for i in items]


def split_fingerprint(users: list[str], items: list[str]) -> str:
    """A short hash of the evaluated (user, target) rows: equal fingerprints mean the same test set."""
    digest = hashlib.sha1("\n".join(f"{u}\t{i}" for u, i in zip(users, items)).encode("utf-8"))
    return digest.hexdigest()[:16]


def encode_hits(topk_matrix: np.ndarray) -> dict:
    """Compact JSON form of a ``rec.topk`` matrix: one '0'/'1' string per row, plus positives."""
    hits, pos_len = topk_matrix[:, :-1], topk_matrix[:, -1]
    return {"hits": ["".join("1" if h else "0" for h in row) for row in hits], "pos_len": pos_len.tolist()}


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
