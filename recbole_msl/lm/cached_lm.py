"""The Hugging Face side of beam search: a causal LM that keeps, grows and reorders its KV cache.

:class:`CachedCausalLM` implements :class:`recbole_msl.core.beam_search.SearchLM`. Where the
architecture allows it (:mod:`recbole_msl.lm.beam_attention`), a user's prompt keys and values are
kept once for all its beams and the LM batch holds only live beams; otherwise each beam has its
own cache row in preallocated buffers (:class:`_BeamLayerCache`), where appending writes in place
and reordering beams within a user copies only the generated part.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from . import beam_attention
from .common_prefix import prefix_cache
from .hf_cache import cache_kwargs, cache_of
from .kv_buffers import BufferedLayer


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

    def __init__(self, model, one_prompt_per_user: bool = True):
        self.model = model
        self.cache = None
        self.mask = None
        self.next_position = None
        self.beams = 1
        self.one_prompt_per_user = one_prompt_per_user
        self.user_prompts = None  # a UserPromptState once expand() chose the one-prompt-per-user layout

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
                         use_cache=True, logits_to_keep=1, **cache_kwargs(cache))
        self.cache = cache_of(out)
        self.mask = attention_mask
        self.next_position = attention_mask.long().sum(-1)
        return out.logits[:, -1]

    def expand(self, beams: int, capacity: int) -> int:
        """Prepare the cache for ``beams`` beams per user; return the rows per user of the next logits.

        Where the model allows it (:func:`beam_attention.supported`), each user's prompt stays a
        single copy that all its beams read, rows hold only live beams, and 1 is returned (one row
        per user so far). Otherwise each user's cache is copied ``beams`` times (rows [U * beams]):
        plain Hugging Face layers move into beam buffers preallocated for ``capacity`` more tokens
        (:class:`_BeamLayerCache`), other layer types are repeated.
        """
        layers = getattr(self.cache, "layers", None)
        self.beams = beams
        if self.one_prompt_per_user and beam_attention.supported(self.model, self.cache):
            self.cache.layers = [beam_attention.UserPromptLayer(layer, self.mask) for layer in layers]
            self.user_prompts = beam_attention.UserPromptState(self.cache.layers)
            return 1
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            self.cache.batch_repeat_interleave(beams)
        else:
            self.cache.layers = [_BeamLayerCache(layer, beams, capacity) for layer in layers]
        self.mask = self.mask.repeat_interleave(beams, 0)
        self.next_position = self.next_position.repeat_interleave(beams, 0)
        return beams

    @property
    def live_rows_only(self) -> bool:
        """True when rows hold only live beams, any number per user (the one-prompt-per-user layout)."""
        return self.user_prompts is not None

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

    def step(self, tokens: torch.Tensor, parent_rows: torch.Tensor, rows_per_user: int,
             kept_users: torch.Tensor | None) -> torch.Tensor:
        """Rows become ``parent_rows`` [N] extended by ``tokens`` [N]; return their next-token logits [N, V].

        In the one-prompt-per-user layout the new rows are ``rows_per_user`` per user, for the users
        ``kept_users`` (indices into the current users; None: all stay); in the per-beam layout rows
        are gathered from ``parent_rows`` (only the generated part moves when beams stay with their user).
        """
        if self.user_prompts is not None:
            return self._user_prompt_step(tokens, parent_rows, rows_per_user, kept_users)
        self._reorder(parent_rows)
        positions = self.next_position[parent_rows]
        self.mask = torch.cat([self.mask[parent_rows], self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(input_ids=tokens.unsqueeze(1), attention_mask=self.mask,
                         position_ids=positions.unsqueeze(1), use_cache=True, logits_to_keep=1,
                         **cache_kwargs(self.cache))
        self.cache = cache_of(out)
        self.next_position = positions + 1
        return out.logits[:, -1]

    def _user_prompt_step(self, tokens, parent_rows, rows_per_user, kept_users):
        for layer in self.cache.layers:
            layer.select(parent_rows, kept_users)
        self.user_prompts.rows_per_user = rows_per_user
        positions = self.next_position[parent_rows]
        with beam_attention.decoding_steps(self.model):
            out = self.model(input_ids=tokens.unsqueeze(1), position_ids=positions.unsqueeze(1),
                             use_cache=True, logits_to_keep=1, user_prompts=self.user_prompts,
                             **cache_kwargs(self.cache))
        self.next_position = positions + 1
        return out.logits[:, -1]
