"""What a ranking evaluation counts: one rule for every model run through the plugin (issue 29).

This is the one seam with RecBole's evaluation; the registry (:mod:`recbole_msl.recbole_seam.registry`) puts
:class:`EvaluationProtocolMixin` on RecBole's trainers and LLMMSL's trainer inherits it.

* **An item the model gave no score is never a hit.** LLMMSL scores only the titles its beams
  finished and gives every other item -inf. When fewer items are scored than ``max(topk)``,
  RecBole's ``torch.topk`` fills the list with tied -inf items in an arbitrary order and can count
  a target the model never produced as a hit. :class:`ReachedOnlyCollector` marks those ranks as
  misses in ``rec.topk``, the matrix every top-k metric (Hit, NDCG, MRR, Recall, Precision, MAP)
  and the per-user records (:mod:`recbole_msl.evaluation.records`) are computed from. It covers
  full-sort and sampled (``predict``) evaluation alike, since both reach the collector as a score
  matrix. Only hit flags at -inf ranks change, so RecBole's models keep RecBole's matrix: their
  -inf scores are the padding item (never a target) and, for general models, the training items
  RecBole masks (a target there only in the degenerate case of fewer unmasked items than
  ``max(topk)``). ``rec.items`` (the input of ItemCoverage and other list metrics) still lists
  the unscored items.
* **``eval_exclude_seen``** (default False: RecBole's sequential protocol, which masks nothing, for
  SASRec and LLMMSL alike) removes every item the user interacted with before the target from the
  ranking, for every sequential model: RecBole's models get -inf at those items before the top-k,
  LLMMSL keeps them out inside the beam search (``full_sort_predict(..., exclude=...)``, the
  machinery ``recommend`` uses), so its beams are spent on unseen titles. "Before the target" is
  the user's whole sequence up to the target (:class:`UserHistories`), not only the last
  ``MAX_ITEM_LIST_LENGTH`` items RecBole keeps in the row, so models with different history lengths
  remove the same items (RecBole's benchmark files give only their rows' windows: there the window
  is the history). Validation ranks under the same rule, so model selection sees what the test
  counts. The target itself is never removed: a user who interacts with the target again keeps it
  in the ranking (removing it would make that row a miss for every model by
  construction; RecBole's ml-100k has no repeats, other data sets may). General (non-sequential)
  models are left as RecBole ranks them: RecBole already masks their training interactions.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.evaluator import Collector
from recbole.utils import EvaluatorType, ModelType

from ..validate import flag

NEG_INF = float("-inf")


def unscored_ranks(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k] bool: the ranks of ``torch.topk(scores, k)`` that hold an item scored -inf.

    topk sorts descending and -inf sorts last, so they are the ranks from each row's number of
    other scores on: no second top-k is needed, and the ranks RecBole computed are the ones marked.
    """
    scored = (scores != NEG_INF).sum(1, keepdim=True)  # [B, 1]
    return torch.arange(k, device=scores.device) >= scored


class ReachedOnlyCollector(Collector):
    """RecBole's collector whose ``rec.topk`` counts a target at a -inf rank as a miss (see the module)."""

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if self.register.need("rec.topk") and scores_tensor.size(0):
            k = max(self.topk)
            rows = self.data_struct["rec.topk"][-scores_tensor.size(0):, :k]  # this batch's hit flags (a view)
            rows.masked_fill_(unscored_ranks(scores_tensor, k).to(rows.device), 0)


class UserHistories:
    """Every user's whole item sequence, read from the augmented sequential data set right after RecBole's build.

    RecBole's augmentation keeps in each row (``ITEM_SEQ`` up to ``ITEM_SEQ_LEN``) only the last
    ``MAX_ITEM_LIST_LENGTH`` items before its target, so the row alone cannot tell what else the user
    saw. "Whole history" is therefore every interaction of the user in the loaded data set (after
    RecBole's filters: what a filter dropped is unknown) that precedes the target in RecBole's
    (user, time) order, older than the window too. The augmented data set holds one row per
    interaction but each user's first, in time order (RecBole's sorts are stable), the first row
    with a one-item history: that item, then every row's target, is the user's sequence. A row's
    whole history is the prefix that ends with the row's window and is followed by its target.
    """

    def __init__(self, dataset):
        inter = dataset.inter_feat
        seq_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
        uid = inter[dataset.uid_field].numpy()
        order = np.argsort(uid, kind="stable")  # rows of a user stay in time order
        uid, target = uid[order], inter[dataset.iid_field].numpy()[order]
        first_item = inter[seq_field][:, 0].numpy()[order]
        starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]])
        self.items = np.insert(target, starts, first_item[starts])  # each user: first item, then the targets
        self.users = uid[starts]  # sorted
        self.begin = starts + np.arange(len(starts))
        self.end = np.r_[self.begin[1:], len(self.items)]
        self.max_len = int(dataset.config["MAX_ITEM_LIST_LENGTH"])

    def before(self, user: int, target: int, window: list[int]) -> list[int]:
        """The items ``user`` interacted with before ``target``, oldest first, given the row's ``window``.

        A window shorter than ``MAX_ITEM_LIST_LENGTH`` is already the whole history. A full one may
        recur with the same target (repeats): the latest such position is taken. A row the data set
        does not explain (another data set object) gives its window back.
        """
        at = np.searchsorted(self.users, user)
        if at == len(self.users) or self.users[at] != user:
            return list(window)
        seq, n = self.items[self.begin[at]:self.end[at]], len(window)
        positions = [n] if n < self.max_len else (np.flatnonzero(seq[n:] == target) + n).tolist()
        for p in reversed(positions):
            if p < len(seq) and seq[p] == target and np.array_equal(seq[p - n:p], window):
                return seq[:p].tolist()
        return list(window)


def seen_items(interaction, positive_u, positive_i, item_seq: str, item_seq_len: str, user_field: str,
               histories: UserHistories | None) -> list[list[int]]:
    """Per evaluated row: the items seen before its target (whole history if ``histories``), minus its targets."""
    keep: list[set] = [set() for _ in range(len(interaction))]
    for row, item in zip(positive_u.tolist(), positive_i.tolist()):
        keep[row].add(item)
    seqs, lengths = interaction[item_seq].tolist(), interaction[item_seq_len].tolist()
    users = interaction[user_field].tolist()
    out = []
    for row, (seq, n, user) in enumerate(zip(seqs, lengths, users)):
        window = seq[:n]
        target = min(keep[row]) if keep[row] else None
        history = histories.before(user, target, window) if histories is not None and target is not None else window
        out.append(sorted(set(history) - keep[row]))
    return out


def remove_items(scores: torch.Tensor, items: list[list[int]]) -> torch.Tensor:
    """-inf at ``items[r]`` of each row r of ``scores`` (in place); returns ``scores``."""
    rows = [r for r, row in enumerate(items) for _ in row]
    if rows:
        cols = [i for row in items for i in row]
        scores[torch.tensor(rows, device=scores.device), torch.tensor(cols, device=scores.device)] = NEG_INF
    return scores


class EvaluationProtocolMixin:
    """Put in front of a RecBole trainer: :class:`ReachedOnlyCollector` and ``eval_exclude_seen``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_collector = ReachedOnlyCollector(config)
        self.exclude_seen = (flag(config["eval_exclude_seen"], "eval_exclude_seen", False)
                             and config["MODEL_TYPE"] == ModelType.SEQUENTIAL)
        self._histories: UserHistories | None = None

    def evaluate(self, eval_data, *args, **kwargs):
        """RecBole's evaluation, knowing the whole histories of ``eval_data``'s users (if its data set has them)."""
        self._histories = getattr(getattr(eval_data, "_dataset", None), "user_histories", None)
        return super().evaluate(eval_data, *args, **kwargs)

    def _seen(self, interaction, positive_u, positive_i) -> list[list[int]]:
        model = self.model
        return seen_items(interaction, positive_u, positive_i, model.ITEM_SEQ, model.ITEM_SEQ_LEN, model.USER_ID,
                          self._histories)

    def _full_sort_batch_eval(self, batched_data):
        if not self.exclude_seen:
            return super()._full_sort_batch_eval(batched_data)
        interaction, _, positive_u, positive_i = batched_data  # RecBole's sequential loader has no history_index
        seen = self._seen(interaction, positive_u, positive_i)
        if getattr(self.model, "excludes_in_search", False):  # LLMMSL: the beams go to unseen titles
            scores = self.model.full_sort_predict(interaction.to(self.device), exclude=seen)
            scores = scores.view(-1, self.tot_item_num)
            scores[:, 0] = NEG_INF  # the padding item, as RecBole's _full_sort_batch_eval does
        else:
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        return interaction, remove_items(scores, seen), positive_u, positive_i

    def _neg_sample_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._neg_sample_batch_eval(batched_data)
        if not self.exclude_seen or self.config["eval_type"] != EvaluatorType.RANKING:
            return interaction, scores, positive_u, positive_i
        row_idx = batched_data[1].cpu().numpy()  # the user row of each (user, candidate) row
        _, first = np.unique(row_idx, return_index=True)  # one interaction row per user row, in user-row order
        seen = self._seen(interaction[torch.as_tensor(first, device=interaction[self.model.ITEM_SEQ].device)],
                          positive_u, positive_i)
        return interaction, remove_items(scores, seen), positive_u, positive_i

