"""FLOP counts of one training step, by the usual convention for a frozen backbone with LoRA.

Forward costs 2 x parameters x tokens and the backward pass 2 x more (gradients of the
activations only: the frozen weights get none), so the body costs 4 x non-embedding parameters x
tokens. The LM head is counted separately as the FLOPs actually computed: 4 x d x (columns) x
(rows). Attention score FLOPs are not counted (the convention leaves them out).

Two counts, because our step runs fewer body tokens than the batch holds (the prompt prefix the
batch shares runs once):
  * model FLOPs (the issue's convention, "MFU"): body over the batch's real tokens;
  * executed FLOPs ("HFU"): body over the tokens each step actually runs, padding included.
"""

from __future__ import annotations

import torch

from recbole_msl.lm.common_prefix import common_prefix_length


def body_parameters(base) -> int:
    """Parameters outside the token embedding and the LM head (LoRA adapters included)."""
    skip = {id(base.get_input_embeddings().weight), id(base.get_output_embeddings().weight)}
    return sum(p.numel() for p in base.parameters() if id(p) not in skip)


def batch_shape(model, batch) -> dict:
    """Real and padded token counts of a batch as both steps feed it, and our head's work."""
    prompts = [model.prompts.prompt(h) for h in model._histories(batch)]
    responses = [model.prompts.response(t) for t in batch[model.POS_ITEM_ID].tolist()]
    lengths = [len(p) + len(r) - 1 for p, r in zip(prompts, responses)]
    rows = [p + r[:-1] for p, r in zip(prompts, responses)]
    shared = common_prefix_length(rows, min(len(p) for p in prompts) - 1) if model.opts.share_prompt_prefix else 0
    resp, _ = model.pad(responses, left=False)
    resp_len = torch.tensor([len(r) for r in responses], device=resp.device)
    nodes = model.trie.path(resp, resp_len)
    live = torch.arange(resp.size(1), device=resp.device) < resp_len.unsqueeze(1)
    nodes = nodes[live]
    branch = nodes[model.trie.num_children(nodes) > 1]
    edges, valid = model.trie.children_padded(branch)
    unique = torch.unique(model.trie.edge_token[edges][valid])
    return {
        "samples": len(prompts),
        "real_tokens": sum(lengths),
        "padded_tokens": len(lengths) * max(lengths),
        "shared_prefix_tokens": shared,
        "executed_tokens_ours": shared + len(lengths) * (max(lengths) - shared),
        "response_positions": int(live.sum()),
        "loss_positions": int(branch.numel()),
        "head_columns_ours": int(unique.numel()),
    }


def step_flops(base, shape: dict, ours: bool, executed: bool = False) -> float:
    """FLOPs of one step: 4 x body params x tokens + the LM-head FLOPs that step computes.

    Tokens are the batch's real tokens (model FLOPs) or, with ``executed``, those the step runs:
    ours the shared prefix once plus every padded suffix, the reference every padded position.
    """
    d = base.get_output_embeddings().in_features
    vocab = base.get_output_embeddings().out_features
    if executed:
        tokens = shape["executed_tokens_ours"] if ours else shape["padded_tokens"]
    else:
        tokens = shape["real_tokens"]
    body = 4.0 * body_parameters(base) * tokens
    if ours:  # hidden[branch positions] @ W[unique valid tokens]
        head = 4.0 * d * shape["head_columns_ours"] * shape["loss_positions"]
    else:  # logits at every (padded) position, full vocabulary
        head = 4.0 * d * vocab * shape["padded_tokens"]
    return body + head
