"""The decoders by name (``decoder``): each ranks titles for a batch of prompts and returns the best finished
titles as (scores [U, K], trie leaves [U, K]), and says how many titles it can return at most. A new decoder is
its search in :mod:`recbole_msl.core` and one entry in :data:`DECODERS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.beam_search import NoLM, constrained_beam_search
from ..lm.cached_lm import CachedCausalLM


def constrained_beam(model, histories, prompts, shared: int, excluded):
    """Constrained beam search over the title trie (the paper's ranking); with an assistant, its masses guide it
    (:mod:`recbole_msl.core.subtree_mass`), and with ``llm_weight: 0`` no language model runs at all."""
    ids, mask = model.pad([p[shared:] for p in prompts], left=True)
    guide = {}
    if model.guided:
        guide = {"guide": model.masses(histories), "assistant_weight": model.assistant_weight,
                 "llm_weight": model.opts.llm_weight}
    lm = CachedCausalLM(model.base) if model.opts.trains_llm else NoLM(model.trie.vocab_span)
    return constrained_beam_search(lm, ids, mask, model.trie, model.opts.num_beams,
                                   length_penalty=model.opts.length_penalty, renormalize=model.opts.renormalize,
                                   prefix=prompts[0][:shared], excluded=excluded, **guide)


@dataclass(frozen=True)
class Decoder:
    search: Callable  # (model, histories, prompts, shared prefix length, excluded nodes) -> (scores, leaves)
    capacity: Callable  # (LLMMSLOptions) -> the most titles one search returns; topk may not exceed it
    capacity_key: str | None = None  # the option that raises the capacity, named in the error's fix (if any)


DECODERS = {"constrained_beam": Decoder(constrained_beam, capacity=lambda opts: opts.num_beams,
                                        capacity_key="num_beams")}
