"""The LM head's logits, for every token or only for the tokens that matter.

MSL needs the logits of a position's valid tokens only (a few, or a few thousand, of a vocabulary
of 50k-128k): ``hidden @ W[tokens]`` costs a fraction of the full head. Some architectures
transform the head's output (a scale, a soft cap); those transforms are applied here too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def finish_logits(config, logits: torch.Tensor) -> torch.Tensor:
    """Apply the elementwise output transforms some architectures put after the LM head."""
    if getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        logits = logits * config.logit_scale
    if getattr(config, "logits_scaling", None) not in (None, 1, 1.0):
        logits = logits / config.logits_scaling
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def head_logits(model, hidden: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of ``hidden`` [P, d]: over the vocabulary ([P, V]), or of ``tokens`` [P, K] only ([P, K])."""
    head = model.get_output_embeddings()
    if tokens is None or type(head) is not torch.nn.Linear:  # e.g. LoRA on lm_head: run the module
        logits = finish_logits(model.config, head(hidden))
        return logits if tokens is None else logits.gather(1, tokens)
    unique, inverse = torch.unique(tokens, return_inverse=True)  # |U| <= vocab
    sub = F.linear(hidden, head.weight[unique], None if head.bias is None else head.bias[unique])  # [P, |U|]
    return finish_logits(model.config, sub).gather(1, inverse)
