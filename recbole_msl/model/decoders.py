"""The decoders by name (``decoder``): each ranks titles for a batch of prompts and returns the best finished
titles as (scores [U, K], trie leaves [U, K]). A new decoder is its search in :mod:`recbole_msl.core` and one
entry here."""

from __future__ import annotations

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


DECODERS = {"constrained_beam": constrained_beam}
