"""Batched constrained beam search over a :class:`~recbole_msl.trie.TokenTrie`.

Every step is a handful of tensor operations for all users and beams at once
(no Python callback per beam or token), with the backbone's KV cache reordered
in place. Semantics follow Hugging Face's beam search with
``early_stopping=False``: a finished hypothesis scores
``sum(log p) / length ** length_penalty``, length counting the response tokens
including EOS. Two differences, both towards better recall: every candidate
that completes a title enters the pool of finished hypotheses (the best
``num_beams`` are kept), and a user stops as soon as no running beam can still
beat its worst kept hypothesis (an exact bound, since log-probabilities are <= 0
and a beam at trie node n ends within ``node_height[n]`` tokens). Stopped users
leave the batch and the KV cache, so later steps cost only the users still running.
Where the architecture allows it (:mod:`recbole_msl.beam_attention`), a user's
prompt keys and values are kept once for all its beams and the LM batch holds
only live beams (rows per user = the most live beams any user has this step).
With at least as many beams as titles nothing is pruned and the result equals
exhaustive scoring of every title.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from . import beam_attention
from .kv_buffers import BufferedLayer
from .shared_prefix import prefix_cache


class _BeamLayerCache(BufferedLayer):
    """One layer's KV cache in a buffer preallocated for the prompt plus ``capacity`` generated tokens.

    Every beam of a user shares that user's prompt keys and values, so reordering beams within users
    rewrites only the generated part, and appending writes in place: no per-step copy of the whole
    cache (Hugging Face's DynamicLayer concatenates on every append and copies every row on reorder).
    Rows are gathered in full only when users leave the batch.
    """

    def __init__(self, layer: DynamicLayer, beams: int, capacity: int):
        super().__init__()
        users, heads, prompt, dim = layer.keys.shape  # [U, h, L, d]
        self.prompt = prompt
        buffers = []
        for states in (layer.keys, layer.values):
            buffer = states.new_empty(users, beams, heads, prompt + capacity, dim)
            buffer[:, :, :, :prompt] = states.unsqueeze(1)  # each user's prompt, once per beam
            buffers.append(buffer.view(users * beams, heads, prompt + capacity, dim))
        self._start(buffers, prompt)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Any reordering: gather whole rows."""
        self.buffers = [b.index_select(0, beam_idx) for b in self.buffers]
        self._expose()

    def reorder_generated(self, beam_idx: torch.LongTensor) -> None:
        """Reordering that keeps every row with its user: only the generated tokens move."""
        generated = slice(self.prompt, self.length)
        for buffer in self.buffers:
            buffer[:, :, generated] = buffer[beam_idx, :, generated]
        self._expose()


class CachedCausalLM:
    """Feeds one token per beam to a Hugging Face causal LM, keeping and reordering its KV cache.

    Prompts are left-padded; position ids come from the attention mask so padding does not shift them.
    """

    def __init__(self, model, share_prompt_across_beams: bool = True):
        self.model = model
        self.cache = None
        self.mask = None
        self.next_position = None
        self.beams = 1
        self.share_prompt_across_beams = share_prompt_across_beams
        self.shared = None  # a SharedPromptState once expand() chose the shared-prompt layout

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                prefix: list[int] | None = None) -> torch.Tensor:
        """Run the prompts [U, L]; return next-token logits [U, V].

        With ``prefix`` (token ids every prompt starts with, left out of ``input_ids``), the prefix
        runs once and its cache is repeated for every user; the left padding then sits between it
        and the rest of each prompt, masked out, with positions counted over real tokens.
        """
        users, shared = input_ids.size(0), len(prefix or [])
        cache = None
        if shared:
            _, cache = prefix_cache(self.model, prefix, users, input_ids.device, logits_to_keep=1)
            attention_mask = torch.cat([attention_mask.new_ones(users, shared), attention_mask], dim=1)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, shared:]
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        self.mask = attention_mask
        self.next_position = attention_mask.long().sum(-1)
        return out.logits[:, -1]

    def expand(self, beams: int, capacity: int | None = None) -> int:
        """Prepare the cache for ``beams`` beams per user; return the rows per user of the next logits.

        Where the model allows it (:func:`beam_attention.supported`), each user's prompt stays a
        single copy that all its beams read, rows hold only live beams, and 1 is returned (one row
        per user so far). Otherwise each user's cache is copied ``beams`` times (rows [U * beams]):
        with ``capacity`` (most tokens still to come) plain Hugging Face layers move into
        preallocated beam buffers (:class:`_BeamLayerCache`), other layer types are repeated.
        """
        layers = getattr(self.cache, "layers", None)
        self.beams = beams
        if capacity is not None and self.share_prompt_across_beams and beam_attention.supported(self.model, self.cache):
            self.cache.layers = [beam_attention.SharedPromptLayer(layer, self.mask) for layer in layers]
            self.shared = beam_attention.SharedPromptState(self.cache.layers)
            return 1
        if capacity is None or not layers or any(type(layer) is not DynamicLayer for layer in layers):
            self.cache.batch_repeat_interleave(beams)
        else:
            self.cache.layers = [_BeamLayerCache(layer, beams, capacity) for layer in layers]
        self.mask = self.mask.repeat_interleave(beams, 0)
        self.next_position = self.next_position.repeat_interleave(beams, 0)
        return beams

    @property
    def compacts(self) -> bool:
        """True when rows may hold any number of live beams per user (the shared-prompt layout)."""
        return self.shared is not None

    def _reorder(self, parent_rows: torch.Tensor) -> None:
        rows = self.mask.size(0)
        within_users = parent_rows.numel() == rows and bool(
            (parent_rows // self.beams == torch.arange(rows, device=parent_rows.device) // self.beams).all())
        for layer in getattr(self.cache, "layers", None) or []:
            if within_users and isinstance(layer, _BeamLayerCache):
                layer.reorder_generated(parent_rows)
            else:
                layer.reorder_cache(parent_rows)
        if not getattr(self.cache, "layers", None):
            self.cache.reorder_cache(parent_rows)

    def step(self, tokens: torch.Tensor, parent_rows: torch.Tensor, rows_per_user: int | None = None,
             kept_users: torch.Tensor | None = None) -> torch.Tensor:
        """Reorder rows to ``parent_rows`` [N], append ``tokens`` [N]; return logits [N, V].

        In the shared-prompt layout the new rows are ``rows_per_user`` per user, for the users
        ``kept_users`` (indices into the current users; None: all stay).
        """
        if self.shared is not None:
            return self._shared_step(tokens, parent_rows, rows_per_user, kept_users)
        self._reorder(parent_rows)
        positions = self.next_position[parent_rows]
        self.mask = torch.cat([self.mask[parent_rows], self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(input_ids=tokens.unsqueeze(1), attention_mask=self.mask,
                         position_ids=positions.unsqueeze(1), past_key_values=self.cache,
                         use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        self.next_position = positions + 1
        return out.logits[:, -1]

    def _shared_step(self, tokens, parent_rows, rows_per_user, kept_users):
        for layer in self.cache.layers:
            layer.select(parent_rows, kept_users)
        self.shared.rows_per_user = rows_per_user
        positions = self.next_position[parent_rows]
        with beam_attention.decoding_steps(self.model):
            out = self.model(input_ids=tokens.unsqueeze(1), position_ids=positions.unsqueeze(1),
                             past_key_values=self.cache, use_cache=True, logits_to_keep=1,
                             shared_prompt=self.shared)
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
                            length_penalty: float = 1.0, renormalize: bool = False, prefix: list[int] | None = None):
    """Decode the best titles for each prompt.

    Args:
        lm: a :class:`CachedCausalLM`.
        prompt_ids, prompt_mask: [U, L] left-padded prompts (without ``prefix``).
        trie: the title trie, on the prompts' device.
        prefix: token ids that every prompt starts with, run once for all users.
    Returns:
        (scores [U, K], leaves [U, K]): the best finished hypotheses, best first; -inf / -1 where none.
    """
    users, beams = prompt_ids.size(0), num_beams
    device = prompt_ids.device
    neg_inf = float("-inf")
    logits = lm.prefill(prompt_ids, prompt_mask, prefix) if prefix else lm.prefill(prompt_ids, prompt_mask)  # [U, V]
    per_user = lm.expand(beams, trie.max_depth)  # LM rows per user: live beams only, or all beams
    compacts = lm.compacts
    if per_user > 1:
        logits = logits.repeat_interleave(per_user, 0)  # [A*M, V]: rows of the active users, beams contiguous

    node = torch.full((users, beams), -1, dtype=torch.long, device=device)
    node[:, 0] = 0  # one live beam at the root
    score = torch.full((users, beams), neg_inf, device=device)
    score[:, 0] = 0.0
    done_score = torch.full((users, beams), neg_inf, device=device)
    done_leaf = torch.full((users, beams), -1, dtype=torch.long, device=device)
    active = torch.arange(users, device=device)  # users still decoding; the LM holds only their rows

    for step in range(trie.max_depth):
        length = step + 1
        n_active = active.numel()
        # live beams come first in each user's row (topk order), so the LM rows are columns [0, per_user)
        edges, valid = trie.children_padded(node[active, :per_user].reshape(-1))  # [A*M, D]
        width = edges.size(1)
        tokens = trie.edge_token[edges]  # [A*M, D]
        log_probs = _step_log_probs(logits, tokens, valid, renormalize)
        cand = (score[active, :per_user].reshape(-1, 1) + log_probs).masked_fill(~valid, neg_inf)
        cand = cand.view(n_active, per_user * width)
        child = (edges + 1).view(n_active, per_user * width)  # node reached by each candidate
        if cand.size(1) < beams:  # fewer candidates than beams: pad with dead ones
            cand = torch.cat([cand, cand.new_full((n_active, beams - cand.size(1)), neg_inf)], 1)
            child = torch.cat([child, child.new_zeros(n_active, beams - child.size(1))], 1)
        child_leaf = trie.node_leaf[child]  # [A, M*D]
        is_leaf = (child_leaf >= 0) & torch.isfinite(cand)

        # finished: keep the best `beams` of old and newly completed hypotheses
        finished = (cand / _length_norm(length, length_penalty)).masked_fill(~is_leaf, neg_inf)
        kept, pick = torch.cat([done_score[active], finished], 1).topk(beams, dim=1)  # [A, K]
        done_leaf[active] = torch.cat([done_leaf[active], child_leaf.masked_fill(~is_leaf, -1)], 1).gather(1, pick)
        done_score[active] = kept

        # running: the best `beams` candidates that are not finished
        running, pick = cand.masked_fill(is_leaf, neg_inf).topk(beams, dim=1)  # [A, K]
        alive = torch.isfinite(running)
        pick = pick.masked_fill(~alive, 0)  # dead beams point at a harmless first candidate
        reached = torch.where(alive, child.gather(1, pick), torch.full_like(pick, -1))

        # stop a user once no running beam can beat its worst kept hypothesis: a beam at node n can
        # only finish with length + 1 ... length + height(n) tokens and a log-probability <= its score
        longest = length + trie.node_height[reached.clamp(min=0)]  # [A, K]
        best_future = torch.maximum(running / _length_norm(length + 1, length_penalty),
                                    running / longest.float() ** length_penalty)
        hopeless = best_future.max(1).values <= kept[:, -1]  # [A]
        reached[hopeless] = -1
        running[hopeless] = neg_inf
        node[active], score[active] = reached, running

        # users with a live beam go on; the others leave the batch (and the KV cache)
        going = (reached >= 0).any(1)  # [A]
        if not bool(going.any()):
            break
        next_per_user = int((reached[going] >= 0).sum(1).max()) if compacts else beams
        rows = torch.arange(n_active, device=device)[going].unsqueeze(1) * per_user  # [A', 1]
        pick = pick[going, :next_per_user]
        parent_rows = (rows + pick // width).view(-1)  # [A'*M'] rows of the current LM batch
        next_tokens = tokens.view(n_active, per_user * width)[going].gather(1, pick)  # [A', M']
        kept_users = None if bool(going.all()) else torch.arange(n_active, device=device)[going]
        active = active[going]
        logits = lm.step(next_tokens.view(-1), parent_rows, next_per_user, kept_users)  # [A'*M', V]
        per_user = next_per_user
    return done_score, done_leaf
