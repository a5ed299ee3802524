"""Run the prompt prefix common to a batch once, and reuse its KV cache for every sample.

Every prompt starts with the same template and instruction (about 70 of ~160 tokens with the
default template), and in a causal LM the hidden states and keys/values of a prefix depend on
that prefix only. So a batch runs it once as a [1, p] sequence, repeats its cache B times, and
runs only the [B, T - p] rest: the outputs equal the plain forward (up to float rounding), and
gradients reach the common prefix through the repeated cache. The one difference in training:
LoRA dropout then draws one mask for the common prefix instead of one per sample.

The prefix is found from the token ids (longest common prefix of the batch), so custom templates
and chat formats are covered without any assumption about the template.
"""

from __future__ import annotations

import torch

from ..core.batching import pad_rows
from .hf_cache import cache_kwargs, cache_of

MIN_COMMON_TOKENS = 4  # below this, the extra forward call costs more than it saves


def common_prefix_length(rows: list[list[int]], limit: int | None = None) -> int:
    """Longest common prefix of ``rows`` (at most ``limit`` tokens), leaving a token of each row after it."""
    if len(rows) < 2:
        return 0
    limit = min(min(len(r) for r in rows) - 1, len(rows[0]) if limit is None else limit)
    first = rows[0]
    length = 0
    while length < limit and all(r[length] == first[length] for r in rows):
        length += 1
    return length if length >= MIN_COMMON_TOKENS else 0


def can_share(model) -> bool:
    """Gradient checkpointing turns the KV cache off in training, so the prefix could not be reused."""
    if not model.training:
        return True
    if hasattr(type(model), "is_activation_checkpointing"):  # transformers >= 5.2x; the old name goes in v6
        return not model.is_activation_checkpointing
    return not getattr(model, "is_gradient_checkpointing", False)


def prefix_cache(model, prefix: list[int], copies: int, device, **kwargs):
    """Run ``prefix`` once; return (model output, its cache repeated ``copies`` times along the batch)."""
    out = model(input_ids=torch.tensor([prefix], device=device), use_cache=True, **kwargs)
    cache = cache_of(out)
    cache.batch_repeat_interleave(copies)
    return out, cache


def decode_right_padded(decoder, rows: list[list[int]], pad_id: int, share: bool = True, limit: int | None = None):
    """Last hidden states of ``rows`` (right-padded with ``pad_id``), their common prefix (at most ``limit``
    tokens) run once.

    Returns (hidden [B, T - p, d], p): position t of a row sits at column t - p.
    """
    p = common_prefix_length(rows, limit) if share and can_share(decoder) else 0
    device = decoder.get_input_embeddings().weight.device
    ids, mask = pad_rows([r[p:] for r in rows], pad_id, left=False, device=device)
    if not p:  # right padding sits after every real token, so the causal mask alone hides it
        return decoder(input_ids=ids, use_cache=False).last_hidden_state, 0
    _, cache = prefix_cache(decoder, rows[0][:p], len(rows), ids.device)
    full_mask = torch.cat([mask.new_ones(len(rows), p), mask], dim=1)
    positions = (p + torch.arange(ids.size(1), device=ids.device)).unsqueeze(0).expand(len(rows), -1)
    out = decoder(input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                  **cache_kwargs(cache))
    return out.last_hidden_state, p
