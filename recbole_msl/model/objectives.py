"""The training objectives by name (``llm_loss``): each turns the response positions' hidden states into
(sum of per-position losses, number of positions). A new loss is its math in :mod:`recbole_msl.core.losses`
and one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.losses import ats_positions, ats_statistics, lm_loss_terms, masked_softmax_loss_terms


def language_modelling_terms(model, hidden, targets, nodes, sample):
    """LML: cross-entropy over the whole vocabulary at every response token."""
    terms = lm_loss_terms(model.head(hidden), targets)
    return terms.sum(), terms.numel()


def masked_softmax_terms(model, hidden, targets, nodes, sample):
    """MSL: cross-entropy over the trie's valid tokens at temperature tau, at the positions with a choice (a
    one-token position carries no loss). Under ATS a training pass adds its statistics to ``ats_pending``."""
    branch = model.trie.num_children(nodes) > 1
    if not bool(branch.any()):
        return hidden.sum() * 0.0, 0
    tokens, valid, target_index = model.valid_sets(nodes[branch], targets[branch])
    logits = model.head(hidden[branch], tokens)  # [P, D]
    if model.training and model.opts.adaptive_tau:
        choice = ats_positions(sample[branch], valid.sum(1))  # each sample's title choice
        stats = ats_statistics(logits[choice], valid[choice], target_index[choice])
        model.ats_pending = model.ats_pending.to(stats.device) + stats  # on the model's device (NCCL)
    terms = masked_softmax_loss_terms(logits, valid, target_index, model.tau)
    return terms.sum(), terms.numel()


@dataclass(frozen=True)
class Objective:
    terms: Callable  # (model, hidden [P, d], targets [P], nodes [P], sample [P]) -> (loss sum, positions)
    uses_tau: bool  # whether tau (and ATS) means anything for it


OBJECTIVES = {
    "msl": Objective(masked_softmax_terms, uses_tau=True),
    "lml": Objective(language_modelling_terms, uses_tau=False),
}
