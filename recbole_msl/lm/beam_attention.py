"""Decoding-step attention in which all beams of a user read one copy of that user's prompt keys and values.

Hugging Face keeps a full KV-cache row per beam, so every decoding step reads the prompt's keys
and values once per beam, and reordering beams copies them. Here the prompt part is stored once
per user and only generated tokens are stored per beam. A step then reads each prompt once per
user, and reordering moves only the generated tokens. Beams that are dead (no live hypothesis)
also need no row, so the batch holds only live beams. The softmax over the prompt block and the
generated block is computed block by block and merged exactly (max-shifted exponentials).

It plugs into transformers' attention interface under :data:`NAME`. The model switches to it
(``set_attn_implementation``) only for decoding steps (:func:`decoding_steps`), and only for models
whose attention calls ``attention_interface(module, query, key, value, mask, scaling=...)`` on a plain dynamic cache
(:func:`supported`): Llama, Mistral (without a sliding window), Qwen2, Qwen3 and GPT-2, each
checked against exhaustive scoring in tests/test_decoding.py.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .kv_buffers import BufferedLayer

NAME = "recbole_msl_user_prompt"
_UNSUPPORTED_CONFIG = ("sliding_window", "attn_logit_softcapping", "final_logit_softcapping", "alibi")


class UserPromptLayer(BufferedLayer):
    """One layer's cache: prompt keys/values per user [U, h, P, d], generated ones per beam row [R, h, G, d]."""

    def __init__(self, layer: DynamicLayer, prompt_mask: torch.Tensor):
        super().__init__()
        self.prompt_keys, self.prompt_values = layer.keys, layer.values  # [U, h, P, d]
        self.prompt_visible = prompt_mask.bool()[:, None, None, :]  # [U, 1, 1, P]
        users, heads, self.offset, dim = layer.keys.shape  # the prompt counts towards the sequence length
        # nothing generated yet; select() sizes the buffers before every step
        self._start([layer.keys.new_empty(users, heads, 0, dim) for _ in range(2)], 0)

    def select(self, rows: torch.Tensor, users: torch.Tensor | None) -> None:
        """Keep generated rows ``rows`` (parents of the next beams) and, if given, prompt users ``users``."""
        moved = []
        for b in self.buffers:  # copy only the generated tokens, with room for the next one
            buffer = b.new_empty(rows.numel(), b.shape[1], self.length + 1, b.shape[3])
            buffer[:, :, :self.length] = b[rows, :, :self.length]
            moved.append(buffer)
        self.buffers = moved
        if users is not None:
            self.prompt_keys = self.prompt_keys.index_select(0, users)
            self.prompt_values = self.prompt_values.index_select(0, users)
            self.prompt_visible = self.prompt_visible.index_select(0, users)
        self._expose()


class UserPromptState:
    """What the attention function needs besides query/key/value: the layers and rows per user."""

    def __init__(self, layers: list[UserPromptLayer]):
        self.layers = layers
        self.rows_per_user = 1


def supported(model, cache) -> bool:
    """True when every layer is a plain dynamic layer and the attention has no extra terms we would drop."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return False
    config = model.config
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if any(getattr(config, key, None) for key in _UNSUPPORTED_CONFIG):
        return False
    return getattr(config, "model_type", "") in SUPPORTED_MODEL_TYPES


# Architectures whose attention is plain scaled dot-product over (rotary-embedded) keys, checked
# against exhaustive scoring in tests/test_decoding.py; others keep Hugging Face's cache layout.
SUPPORTED_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gpt2"}


def user_prompt_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of one new token per row over its user's prompt block and its own generated block.

    query [R, H, 1, d]; key/value [R, h, g, d] (the generated block, this token included); rows are
    grouped by user, ``rows_per_user`` each. Returns ([R, 1, H, d], None) like transformers' sdpa.
    """
    state: UserPromptState = kwargs["user_prompts"]
    layer = state.layers[module.layer_idx]
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    rep, per_user = heads // kv_heads, state.rows_per_user
    users = rows // per_user
    scale = scaling if scaling is not None else dim ** -0.5
    dtype = query.dtype  # matmuls in the model's dtype, softmax statistics in float32
    q = query.reshape(users, per_user, kv_heads, rep, dim).transpose(1, 2)  # [A, h, M, rep, d]
    q = q.reshape(users, kv_heads, per_user * rep, dim)
    prompt_scores = (q @ layer.prompt_keys.transpose(-1, -2)).float() * scale  # [A, h, M*rep, P]
    prompt_scores = prompt_scores.masked_fill(~layer.prompt_visible, float("-inf"))
    q_rows = query.reshape(rows, kv_heads, rep, dim)
    own_scores = (q_rows @ key.transpose(-1, -2)).float() * scale  # [R, h, rep, g]
    own_scores = own_scores.reshape(users, per_user, kv_heads, rep, -1).transpose(1, 2).reshape(
        users, kv_heads, per_user * rep, -1)  # [A, h, M*rep, g]
    top = torch.maximum(prompt_scores.amax(-1, keepdim=True), own_scores.amax(-1, keepdim=True))
    prompt_weights, own_weights = (prompt_scores - top).exp(), (own_scores - top).exp()
    total = prompt_weights.sum(-1, keepdim=True) + own_weights.sum(-1, keepdim=True)
    out = (prompt_weights.to(dtype) @ layer.prompt_values).float()  # [A, h, M*rep, d]
    own_weights = own_weights.reshape(users, kv_heads, per_user, rep, -1).transpose(1, 2).reshape(
        rows, kv_heads, rep, -1)
    own = (own_weights.to(dtype) @ value).float().reshape(users, per_user, kv_heads, rep, dim).transpose(1, 2)
    out = (out + own.reshape(users, kv_heads, per_user * rep, dim)) / total
    out = out.reshape(users, kv_heads, per_user, rep, dim).transpose(1, 2).reshape(rows, 1, heads, dim)
    return out.to(query.dtype), None


@contextlib.contextmanager
def decoding_steps(model):
    """Route the model's attention through :func:`user_prompt_attention` inside the block, by transformers' own
    switch (``set_attn_implementation``, about 0.06 ms a call on 2 cores; a decoding step takes milliseconds)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    if model.config._attn_implementation != NAME:  # the model refused the switch: its steps would read no prompts
        raise RuntimeError(f"{type(model).__name__} refused the switch to the {NAME} attention that beam search's "
                           f"one-prompt-per-user layout needs")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


AttentionInterface.register(NAME, user_prompt_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
