"""Batched constrained beam search over a :class:`~recbole_msl.core.trie.TokenTrie`, and title scores.

Every step is a handful of tensor operations for all users and beams at once (no Python callback
per beam or token). Semantics follow Hugging Face's beam search with ``early_stopping=False``: a
finished hypothesis scores ``sum(log p) / length ** length_penalty``, length counting the response
tokens including EOS. Two differences, both towards better recall: every candidate that completes
a title enters the pool of finished hypotheses (the best ``num_beams`` are kept), and a user stops
as soon as no running beam can still beat its worst kept hypothesis (an exact bound, since
log-probabilities are <= 0 and a beam at trie node n ends within ``node_height[n]`` tokens).
Stopped users leave the batch, so later steps cost only the users still running. With at least as
many beams as titles nothing is pruned and the result equals exhaustive scoring of every title
(:func:`title_scores`, which ``predict`` uses).

The search talks to the language model through :class:`SearchLM` only; the Hugging Face
implementation with its KV cache layouts is :class:`recbole_msl.lm.cached_lm.CachedCausalLM`.
"""

from __future__ import annotations

from typing import Protocol

import torch


class SearchLM(Protocol):
    """What the search needs from a causal LM: next-token logits, batch rows it can reorder."""

    live_rows_only: bool  # True: the rows after a step hold only live beams (``rows_per_user`` each)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                prefix: list[int] | None = None) -> torch.Tensor:
        """Run the left-padded prompts [U, L] (after the ``prefix`` every prompt starts with); logits [U, V]."""

    def expand(self, beams: int, capacity: int) -> int:
        """Make room for ``beams`` beams per user and ``capacity`` more tokens; return rows per user now."""

    def step(self, tokens: torch.Tensor, parent_rows: torch.Tensor, rows_per_user: int,
             kept_users: torch.Tensor | None) -> torch.Tensor:
        """Rows become ``parent_rows`` [N] extended by ``tokens`` [N]; return their next-token logits [N, V]."""


class NoLM:
    """The search without a language model (``llm_weight: 0``): every next token gets the same logit, so the
    LLM's term is constant and weighted by 0; only the guide's masses rank titles."""

    live_rows_only = True

    def __init__(self, vocab: int):
        self.vocab = vocab

    def prefill(self, input_ids, attention_mask, prefix=None):
        return input_ids.new_zeros(input_ids.size(0), self.vocab, dtype=torch.float32)

    def expand(self, beams: int, capacity: int) -> int:
        return 1

    def step(self, tokens, parent_rows, rows_per_user, kept_users):
        return tokens.new_zeros(tokens.size(0), self.vocab, dtype=torch.float32)


def token_log_probs(chosen: torch.Tensor, valid: torch.Tensor, log_normalizer: torch.Tensor | None) -> torch.Tensor:
    """Log-probabilities [N, D] of each row's valid tokens from their logits ``chosen`` [N, D].

    ``log_normalizer`` [N, 1]: the logsumexp of the row's logits over the whole vocabulary, i.e. the
    full softmax, then the trie's mask (Hugging Face's constrained beam search). None: a softmax over
    the valid tokens only ("customized CBS", ``cbs_renormalize``).
    """
    chosen = chosen.float()
    if log_normalizer is None:
        return chosen.masked_fill(~valid, float("-inf")).log_softmax(-1)
    return chosen - log_normalizer


def step_log_probs(logits: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor, renormalize: bool) -> torch.Tensor:
    """Log-probabilities [N, D] of the valid next tokens ``tokens`` [N, D] from full logits [N, V]."""
    normalizer = None if renormalize else logits.float().logsumexp(-1, keepdim=True)
    return token_log_probs(logits.gather(1, tokens), valid, normalizer)


def length_norm(length, length_penalty: float):
    """The score's denominator: ``length ** length_penalty`` (a number, or a tensor of lengths)."""
    if isinstance(length, torch.Tensor):
        return length.float() ** length_penalty
    return float(length) ** length_penalty


def title_scores(token_log_probs: torch.Tensor, sample: torch.Tensor, n_samples: int,
                 length_penalty: float) -> torch.Tensor:
    """Scores [n_samples] of whole titles from their tokens' log-probabilities [P] (``sample`` [P] owns each):
    the score beam search gives a finished hypothesis."""
    total = token_log_probs.new_zeros(n_samples).index_add_(0, sample, token_log_probs)
    lengths = torch.bincount(sample, minlength=n_samples)
    return total / length_norm(lengths, length_penalty)


@torch.no_grad()
def constrained_beam_search(lm: SearchLM, prompt_ids, prompt_mask, trie, num_beams: int,
                            length_penalty: float = 1.0, renormalize: bool = False, prefix: list[int] | None = None,
                            excluded: torch.Tensor | None = None, guide=None, assistant_weight: float = 0.0,
                            llm_weight: float = 1.0):
    """Decode the best titles for each prompt.

    Args:
        lm: the language model (:class:`SearchLM`).
        prompt_ids, prompt_mask: [U, L] left-padded prompts (without ``prefix``).
        trie: the title trie, on the prompts' device.
        prefix: token ids that every prompt starts with, run once for all users.
        excluded: [U, n_nodes] bool (:meth:`TokenTrie.excluded_nodes`): trie nodes user u may not enter,
            so titles of excluded items are never finished and subtrees holding only them are pruned.
        guide: a second model's masses on the trie (:class:`~recbole_msl.core.subtree_mass.UserMasses`, one row
            per prompt). Extending node n by a token towards child c then scores
            ``llm_weight * log p_LLM(token) + assistant_weight * log(M(c) / M(n))``; a finished title scores
            ``llm_weight * sum log p_LLM / length ** length_penalty + assistant_weight * log(M(leaf) / M(root))``.
            The length normalisation divides the LLM's token sum only: the assistant's term is already one
            log-probability per item, whatever the number of tokens its title has. None (or a weight of 0 with
            ``llm_weight`` 1): the LLM alone, computed exactly as without a guide.
    Returns:
        (scores [U, K], leaves [U, K]): the best finished hypotheses, best first; -inf / -1 where none.
    """
    users, beams = prompt_ids.size(0), num_beams
    device = prompt_ids.device
    neg_inf = float("-inf")
    logits = lm.prefill(prompt_ids, prompt_mask, prefix) if prefix else lm.prefill(prompt_ids, prompt_mask)  # [U, V]
    per_user = lm.expand(beams, trie.max_depth)  # LM rows per user: live beams only, or all beams
    if per_user > 1:
        logits = logits.repeat_interleave(per_user, 0)  # [A*M, V]: rows of the active users, beams contiguous

    node = torch.full((users, beams), -1, dtype=torch.long, device=device)
    node[:, 0] = 0  # one live beam at the root
    score = torch.full((users, beams), neg_inf, device=device)
    score[:, 0] = 0.0
    done_score = torch.full((users, beams), neg_inf, device=device)
    done_leaf = torch.full((users, beams), -1, dtype=torch.long, device=device)
    active = torch.arange(users, device=device)  # users still decoding; the LM holds only their rows
    guided = guide is not None and (assistant_weight != 0 or llm_weight != 1)
    if guided:  # score holds the LLM's (weighted) token sum; the assistant's term is read from the node
        assist_of = _assistant_term(guide, assistant_weight)
        assist_bound = _assistant_term(guide, assistant_weight, best_title=True)

    for step in range(trie.max_depth):
        length = step + 1
        n_active = active.numel()
        # live beams come first in each user's row (topk order), so the LM rows are columns [0, per_user)
        edges, valid = trie.children_padded(node[active, :per_user].reshape(-1))  # [A*M, D]
        if excluded is not None:
            owner = active.repeat_interleave(per_user).unsqueeze(1)  # [A*M, 1] user of each LM row
            valid = valid & ~excluded[owner, edges + 1]
        width = edges.size(1)
        tokens = trie.edge_token[edges]  # [A*M, D]
        log_probs = step_log_probs(logits, tokens, valid, renormalize)
        if guided and llm_weight != 1:
            log_probs = log_probs * llm_weight
        cand = (score[active, :per_user].reshape(-1, 1) + log_probs).masked_fill(~valid, neg_inf)
        cand = cand.view(n_active, per_user * width)
        child = (edges + 1).view(n_active, per_user * width)  # node reached by each candidate
        if cand.size(1) < beams:  # fewer candidates than beams: pad with dead ones
            cand = torch.cat([cand, cand.new_full((n_active, beams - cand.size(1)), neg_inf)], 1)
            child = torch.cat([child, child.new_zeros(n_active, beams - child.size(1))], 1)
        child_leaf = trie.node_leaf[child]  # [A, M*D]
        is_leaf = (child_leaf >= 0) & torch.isfinite(cand)
        assist = assist_of(active, child) if guided else None  # [A, M*D] weighted log M(child) / M(root)

        # finished: keep the best `beams` of old and newly completed hypotheses
        finished = cand / length_norm(length, length_penalty)
        finished = (finished if assist is None else finished + assist).masked_fill(~is_leaf, neg_inf)
        kept, pick = torch.cat([done_score[active], finished], 1).topk(beams, dim=1)  # [A, K]
        done_leaf[active] = torch.cat([done_leaf[active], child_leaf.masked_fill(~is_leaf, -1)], 1).gather(1, pick)
        done_score[active] = kept

        # running: the best `beams` candidates that are not finished
        if assist is None:
            running, pick = cand.masked_fill(is_leaf, neg_inf).topk(beams, dim=1)  # [A, K]
        else:  # ranked by the fused score; the LLM's part is carried on
            _, pick = (cand + assist).masked_fill(is_leaf, neg_inf).topk(beams, dim=1)
            running = cand.masked_fill(is_leaf, neg_inf).gather(1, pick)
        alive = torch.isfinite(running)
        pick = pick.masked_fill(~alive, 0)  # dead beams point at a harmless first candidate
        reached = torch.where(alive, child.gather(1, pick), torch.full_like(pick, -1))

        # stop a user once no running beam can beat its worst kept hypothesis: a beam at node n can
        # only finish with length + 1 ... length + height(n) tokens and a log-probability <= its score
        # (the assistant's term of a node bounds that of every title below it: masses only shrink)
        longest = length + trie.node_height[reached.clamp(min=0)]  # [A, K]
        best_future = torch.maximum(running / length_norm(length + 1, length_penalty),
                                    running / longest.float() ** length_penalty)
        if assist is not None:  # no title below a node has a larger assistant term than its best title's (the
            # margin covers float32 rounding between this bound and a finished title's own sum)
            best_future = best_future + assist_bound(active, reached.clamp(min=0)) + 1e-4
        hopeless = best_future.max(1).values <= kept[:, -1]  # [A]
        reached[hopeless] = -1
        running[hopeless] = neg_inf
        node[active], score[active] = reached, running

        # users with a live beam go on; the others leave the batch (and the KV cache)
        going = (reached >= 0).any(1)  # [A]
        if not bool(going.any()):
            break
        next_per_user = int((reached[going] >= 0).sum(1).max()) if lm.live_rows_only else beams
        rows = torch.arange(n_active, device=device)[going].unsqueeze(1) * per_user  # [A', 1]
        pick = pick[going, :next_per_user]
        parent_rows = (rows + pick // width).view(-1)  # [A'*M'] rows of the current LM batch
        next_tokens = tokens.view(n_active, per_user * width)[going].gather(1, pick)  # [A', M']
        kept_users = None if bool(going.all()) else torch.arange(n_active, device=device)[going]
        active = active[going]
        logits = lm.step(next_tokens.view(-1), parent_rows, next_per_user, kept_users)  # [A'*M', V]
        per_user = next_per_user
    return done_score, done_leaf


def _assistant_term(guide, weight: float, best_title: bool = False):
    """``(users [A], nodes [A, C]) -> weight * log(M(node) / M(root))`` [A, C] as float32 (0 for weight 0); with
    ``best_title``, the largest single title's share below the node instead (what a finished title can reach)."""
    share = getattr(guide, "log_best_share", guide.log_share) if best_title else guide.log_share

    def term(users: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        if weight == 0:
            return torch.zeros(nodes.shape, device=nodes.device)
        return (weight * share(users, nodes)).float()
    return term
