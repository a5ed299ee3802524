"""Batched constrained beam search over a :class:`~recbole_msl.trie.TokenTrie`.

Every step is a handful of tensor operations for all users and beams at once
(no Python callback per beam or token), with the backbone's KV cache reordered
in place. Semantics follow Hugging Face's beam search with
``early_stopping=False``: a finished hypothesis scores
``sum(log p) / length ** length_penalty``, length counting the response tokens
including EOS. Two differences, both towards better recall: every candidate
that completes a title enters the pool of finished hypotheses (the best
``num_beams`` are kept), and a user stops as soon as no running beam can still
beat its worst kept hypothesis (an exact bound, since log-probabilities are <= 0).
With at least as many beams as titles nothing is pruned and the result equals
exhaustive scoring of every title.
"""

from __future__ import annotations

import torch


class CachedCausalLM:
    """Feeds one token per beam to a Hugging Face causal LM, keeping and reordering its KV cache.

    Prompts are left-padded; position ids come from the attention mask so padding does not shift them.
    """

    def __init__(self, model):
        self.model = model
        self.cache = None
        self.mask = None
        self.next_position = None

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the prompts [U, L]; return next-token logits [U, V]."""
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        self.mask = attention_mask
        self.next_position = attention_mask.long().sum(-1)
        return out.logits[:, -1]

    def expand(self, beams: int) -> None:
        """Copy each user's cache ``beams`` times: rows become [U * beams]."""
        self.cache.batch_repeat_interleave(beams)
        self.mask = self.mask.repeat_interleave(beams, 0)
        self.next_position = self.next_position.repeat_interleave(beams, 0)

    def step(self, tokens: torch.Tensor, parent_rows: torch.Tensor) -> torch.Tensor:
        """Reorder rows to ``parent_rows`` [N], append ``tokens`` [N]; return logits [N, V]."""
        self.cache.reorder_cache(parent_rows)
        positions = self.next_position[parent_rows]
        self.mask = torch.cat([self.mask[parent_rows], self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(input_ids=tokens.unsqueeze(1), attention_mask=self.mask,
                         position_ids=positions.unsqueeze(1), past_key_values=self.cache,
                         use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        self.next_position = positions + 1
        return out.logits[:, -1]


def _step_log_probs(logits, tokens, valid, renormalize: bool):
    """Log-probabilities [N, D] of each beam's valid next tokens."""
    chosen = logits.gather(1, tokens).float()  # [N, D]
    if renormalize:  # softmax over the valid tokens only ("customized CBS")
        return chosen.masked_fill(~valid, float("-inf")).log_softmax(-1)
    return chosen - logits.float().logsumexp(-1, keepdim=True)  # full-vocabulary softmax, then mask


def _length_norm(length, length_penalty: float) -> float:
    return float(length) ** length_penalty


@torch.no_grad()
def constrained_beam_search(lm: CachedCausalLM, prompt_ids, prompt_mask, trie, num_beams: int,
                            length_penalty: float = 1.0, renormalize: bool = False):
    """Decode the best titles for each prompt.

    Args:
        lm: a :class:`CachedCausalLM` (or anything with prefill/expand/step).
        prompt_ids, prompt_mask: [U, L] left-padded prompts.
        trie: the title trie, on the prompts' device.
    Returns:
        (scores [U, K], leaves [U, K]): the best finished hypotheses, best first; -inf / -1 where none.
    """
    users, beams = prompt_ids.size(0), num_beams
    device = prompt_ids.device
    neg_inf = float("-inf")
    logits = lm.prefill(prompt_ids, prompt_mask)  # [U, V]
    lm.expand(beams)
    logits = logits.repeat_interleave(beams, 0)  # [U*K, V]

    node = torch.full((users, beams), -1, dtype=torch.long, device=device)
    node[:, 0] = 0  # one live beam at the root
    score = torch.full((users, beams), neg_inf, device=device)
    score[:, 0] = 0.0
    done_score = torch.full((users, beams), neg_inf, device=device)
    done_leaf = torch.full((users, beams), -1, dtype=torch.long, device=device)
    user_row = torch.arange(users, device=device).unsqueeze(1) * beams  # [U, 1]

    for step in range(trie.max_depth):
        length = step + 1
        edges, valid = trie.children_padded(node.view(-1))  # [U*K, D]
        width = edges.size(1)
        tokens = trie.edge_token[edges]  # [U*K, D]
        log_probs = _step_log_probs(logits, tokens, valid, renormalize)
        cand = (score.view(-1, 1) + log_probs).masked_fill(~valid, neg_inf).view(users, beams * width)
        child = (edges + 1).view(users, beams * width)  # node reached by each candidate
        child_leaf = trie.node_leaf[child]  # [U, K*D]
        is_leaf = child_leaf >= 0

        # finished: keep the best `beams` of old and newly completed hypotheses
        finished = (cand / _length_norm(length, length_penalty)).masked_fill(~is_leaf, neg_inf)
        pool = torch.cat([done_score, finished], 1)
        done_score, pick = pool.topk(beams, dim=1)
        done_leaf = torch.cat([done_leaf, child_leaf], 1).gather(1, pick)

        # running: the best `beams` candidates that are not finished
        running = cand.masked_fill(is_leaf, neg_inf)
        score, pick = running.topk(beams, dim=1)  # [U, K]
        node = torch.where(torch.isfinite(score), child.gather(1, pick), torch.full_like(pick, -1))

        # stop a user once no running beam can beat its worst kept hypothesis
        best_future = torch.maximum(score / _length_norm(length + 1, length_penalty),
                                    score / _length_norm(trie.max_depth, length_penalty))
        hopeless = best_future.max(1).values <= done_score[:, -1]
        node[hopeless] = -1
        score[hopeless] = neg_inf
        if not bool((node >= 0).any()):
            break

        parent_rows = (user_row + pick // width).view(-1)  # [U*K]
        next_tokens = tokens.view(users, beams * width).gather(1, pick).view(-1)
        logits = lm.step(next_tokens, parent_rows)  # [U*K, V]
    return done_score, done_leaf
