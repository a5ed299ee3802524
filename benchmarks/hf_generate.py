"""The baseline ranker: Hugging Face ``generate`` with ``prefix_allowed_tokens_fn`` over the same trie.

This is how the authors' released code ranks (a Python callback per beam per step, prompts
copied once per beam before the prefill). ``early_stopping=False`` is used because with ``True``
Hugging Face stops once ``num_beams`` hypotheses finish, counting its -1e9 placeholder beams, and
loses real titles; with ``False`` and enough beams it equals exhaustive scoring.
"""

from __future__ import annotations

import torch

from .reference import DictTrie


def allowed_tokens_fn(dict_trie: DictTrie, prompt_width: int, eos: int):
    """The callback: tokens allowed after the response generated so far (EOS once a title is done)."""
    def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        return dict_trie.allowed(input_ids[prompt_width:].tolist()) or [eos]
    return fn


@torch.no_grad()
def hf_rank(model, prompt_ids, prompt_mask, dict_trie: DictTrie, num_beams: int, max_new_tokens: int,
            length_penalty: float = 1.0):
    """Top ``num_beams`` titles per user: a list (one per user) of [(response token tuple, score)], best first."""
    from transformers import GenerationConfig

    eos = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else model.generation_config.eos_token_id
    pad = model.generation_config.pad_token_id if model.generation_config.pad_token_id is not None else eos
    generation = GenerationConfig(num_beams=num_beams, num_return_sequences=num_beams, do_sample=False,
                                  early_stopping=False, length_penalty=length_penalty,
                                  max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad,
                                  output_scores=True, return_dict_in_generate=True)
    width = prompt_ids.size(1)
    out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=generation,
                         prefix_allowed_tokens_fn=allowed_tokens_fn(dict_trie, width, eos))
    users = []
    for u in range(prompt_ids.size(0)):
        rows = []
        for k in range(num_beams):
            r = u * num_beams + k
            tokens = out.sequences[r, width:].tolist()
            if eos in tokens:
                tokens = tokens[:tokens.index(eos) + 1]
            rows.append((tuple(tokens), float(out.sequences_scores[r])))
        users.append(rows)
    return users
