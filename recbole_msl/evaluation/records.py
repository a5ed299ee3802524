"""What every trainer run through the plugin records besides RecBole's averages.

RecBole averages its top-k metrics over users and throws the per-user values away; a paired
significance test between two runs needs them. :class:`RecordingEvaluator` keeps the ``rec.topk``
matrix of the latest evaluation (for each evaluated row: a 0/1 hit flag per rank, then the number
of positives; a rank holding an item the model left unscored is never a hit: :mod:`.protocol`), and
:class:`EvaluationRecordMixin` puts it on any RecBole trainer together with the time ``fit`` spends
validating (so training and evaluation time can be told apart). The registry (:mod:`recbole_msl.recbole_seam.registry`)
adds the mixin to RecBole's trainers; LLMMSL's trainer inherits it.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from recbole.evaluator import Evaluator


class RecordingEvaluator(Evaluator):
    """RecBole's evaluator that also keeps the ``rec.topk`` matrix it was last given."""

    last_topk: np.ndarray | None = None

    def evaluate(self, dataobject):
        matrix = dataobject._data_dict.get("rec.topk")  # DataStruct.get raises on a missing key
        self.last_topk = None if matrix is None else matrix.detach().cpu().numpy().astype(np.int64)
        return super().evaluate(dataobject)


class EvaluationRecordMixin:
    """Put in front of a RecBole trainer: ``last_topk`` of the latest evaluation and ``validation_seconds``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.evaluator = RecordingEvaluator(config)
        self.validation_seconds = 0.0

    def _valid_epoch(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super()._valid_epoch(*args, **kwargs)
        finally:
            self.validation_seconds += time.perf_counter() - start

    @property
    def last_topk(self) -> np.ndarray | None:
        return self.evaluator.last_topk


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


def ranked_hits(eval_data, topk_matrix: np.ndarray) -> dict:
    """Each evaluated row's user, target and ranked hits, with the rows' fingerprint (for paired tests)."""
    users, targets = eval_rows(eval_data)
    return {"users": users, "targets": targets, **encode_hits(topk_matrix), "fingerprint": split_fingerprint(users, targets)}
