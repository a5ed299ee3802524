"""A reference-style MSL training step, written from the issue's description of the authors' code.

What makes it "reference-style" (and what our step avoids):
  * a dense boolean mask [response length x vocabulary] is built for every training sample from a
    dict-of-dicts prefix tree and stored (128k columns for Llama-3's vocabulary);
  * the LM head runs at every position of the sequence, prompt included ([B, T, V] logits);
  * a full-vocabulary softmax is taken first and the mask applied afterwards (renormalised over
    the valid tokens), which is mathematically the masked softmax of MSL.

It computes exactly the loss LLMMSL computes (MSL with tau, mean over positions with more than one
valid token) and the same ATS statistics (each sample's largest valid set, pooled until the step
ends), so the benchmark can assert the two agree.
"""

from __future__ import annotations

import torch

from recbole_msl.core.losses import ats_estimate, ats_update


class DictTrie:
    """The prefix tree as nested dicts (token -> child), the way a Python reference would hold it."""

    def __init__(self, sequences: list[list[int]]):
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for tok in seq:
                node = node.setdefault(tok, {})

    def allowed(self, prefix) -> list[int]:
        """Tokens that may follow ``prefix`` (empty when the prefix leaves the tree)."""
        node = self.root
        for tok in prefix:
            node = node.get(int(tok))
            if node is None:
                return []
        return list(node)

    def dense_mask(self, response: list[int], vocab_size: int) -> torch.Tensor:
        """[R, V] bool: row k marks the tokens valid after the first k response tokens."""
        mask = torch.zeros(len(response), vocab_size, dtype=torch.bool)
        node = self.root
        for k, tok in enumerate(response):
            mask[k, list(node)] = True
            node = node[tok]
        return mask


def build_masks(model, batch, dict_trie: DictTrie, vocab_size: int) -> list[torch.Tensor]:
    """The stored per-sample masks of a batch (built once per sample, as a data set would)."""
    targets = batch[model.POS_ITEM_ID].tolist()
    return [dict_trie.dense_mask(model.prompts.response(t), vocab_size) for t in targets]


def _ats_stats(logits, masks, targets, first):
    """ATS statistics in :func:`recbole_msl.core.losses.ats_statistics`' layout, from dense [P, V] rows."""
    rows = logits[first].detach().double()
    valid = masks[first]
    positive = rows.gather(1, targets[first].unsqueeze(1)).squeeze(1)
    values = rows[valid]
    return torch.tensor([float(positive.numel()), float(positive.sum()), float(values.numel()),
                         float(values.sum()), float((values * values).sum()), float(valid.sum())],
                        dtype=torch.float64)


class ReferenceStep:
    """Loss of a batch the reference way; keeps its own tau so it can run beside LLMMSL."""

    def __init__(self, model, masks: list[torch.Tensor]):
        self.model = model
        self.masks = masks
        self.tau = model.tau
        self.pending = torch.zeros(6, dtype=torch.float64)

    def loss(self, batch) -> torch.Tensor:
        model, opts = self.model, self.model.opts
        prompts = [model.prompts.prompt(h) for h in model._histories(batch)]
        responses = [model.prompts.response(t) for t in batch[model.POS_ITEM_ID].tolist()]
        ids, attention = model.pad([p + r[:-1] for p, r in zip(prompts, responses)], left=False)
        logits = model.llm(input_ids=ids, attention_mask=attention).logits  # [B, T, V]: every position

        sample = torch.tensor([i for i, r in enumerate(responses) for _ in r], device=logits.device)
        position = torch.tensor([len(p) - 1 + k for p, r in zip(prompts, responses) for k in range(len(r))],
                                device=logits.device)
        rows = logits[sample, position]  # [P, V]: the response positions, one gather
        masks = torch.cat(self.masks).to(rows.device)  # [P, V] bool, stacked from the stored masks
        targets = torch.tensor([t for r in responses for t in r], device=rows.device)  # [P]
        counts = masks.sum(1)  # valid tokens per position

        if model.training and opts.adaptive_tau:  # ATS: each sample's position with the most valid tokens
            starts = torch.tensor([0] + [len(r) for r in responses]).cumsum(0)
            largest = []
            for s, e in zip(starts[:-1].tolist(), starts[1:].tolist()):
                branching = [k for k in range(s, e) if counts[k] > 1]
                if branching:
                    largest.append(max(branching, key=lambda k: (int(counts[k]), -k)))
            largest = torch.tensor(largest, dtype=torch.long, device=rows.device)
            self.pending += _ats_stats(rows, masks, targets, largest)

        log_probs = (rows.float() / self.tau).log_softmax(-1)  # full-vocabulary softmax [P, V]
        masked = log_probs.masked_fill(~masks, float("-inf"))  # then the mask
        terms = self.tau * (masked.logsumexp(-1) - log_probs.gather(1, targets.unsqueeze(1)).squeeze(1))
        keep = counts > 1  # one-token positions carry no loss (as in LLMMSL)
        return terms[keep].mean()

    def end_step(self):
        """The ATS update of a finished optimizer step; returns the estimate (or None)."""
        opts = self.model.opts
        estimate = ats_estimate(self.pending, opts.ats_eta, opts.ats_range)
        self.tau = ats_update(self.tau, estimate, opts.ats_alpha)
        self.pending = torch.zeros(6, dtype=torch.float64)
        return estimate
