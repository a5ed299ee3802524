"""Constrained beam search against exhaustive scoring of every title (the tiny random Llama)."""

import pytest
import torch

from recbole_msl.core.beam_search import constrained_beam_search
from recbole_msl.core.trie import TokenTrie
from recbole_msl.lm.cached_lm import CachedCausalLM

TITLES = ["Star Wars", "Star Wars II", "Star Trek", "Alien", "Aliens", "Toy Story", "Toy Story 2",
          "Heat", "Fargo", "Babe", "Casino", "Se7en", "Star Wars"]  # the last shares a title


def build(tokenizer):
    ids = tokenizer([f'"{t}"' for t in TITLES], add_special_tokens=False)["input_ids"]
    seqs = [list(s) + [tokenizer.eos_token_id] for s in ids]
    items = [[i + 1] for i in range(len(TITLES))]
    return TokenTrie.build(seqs, items, n_items=len(TITLES) + 1), seqs


def exact_score(model, prompt, seq, seqs, renormalize, length_penalty):
    """Teacher-forced score with a plain forward (no cache, no padding)."""
    ids = torch.tensor([prompt + seq[:-1]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:].float()  # [R, V]
    total = 0.0
    for k, tok in enumerate(seq):
        if renormalize:
            allowed = sorted({s[k] for s in seqs if s[:k] == seq[:k]})
            total += float(logits[k, allowed].log_softmax(-1)[allowed.index(tok)])
        else:
            total += float(logits[k].log_softmax(-1)[tok])
    return total / len(seq) ** length_penalty


def left_pad(prompts, pad):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids, mask


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
@pytest.mark.parametrize("shared_prompt", [True, False])
def test_enough_beams_equals_exhaustive_scoring(tiny_llm, renormalize, length_penalty, shared_prompt):
    check_exhaustive(*tiny_llm, renormalize, length_penalty, shared_prompt)


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "mistral"])
def test_other_architectures_shared_prompt_layout_matches_exhaustive_scoring(tiny_llm, kind):
    """Qwen2 (q/k/v biases), Qwen3 (q/k norms) and Mistral, all with GQA, through the shared-prompt attention."""
    import transformers

    _, tokenizer = tiny_llm
    prefix = {"qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral"}[kind]
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, eos_token_id=tokenizer.eos_token_id,
        sliding_window=None)
    torch.manual_seed(0)
    model = getattr(transformers, f"{prefix}ForCausalLM")(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0, 1.0)
    check_exhaustive(model, tokenizer, False, 1.0, True)


@pytest.mark.parametrize("beams", [1, 3, 7])
def test_one_prompt_per_user_layout_equals_per_beam_layout(tiny_llm, beams):
    """Live-beam rows over one prompt copy per user give what one full cache row per beam gives."""
    model, tokenizer = tiny_llm
    trie, _ = build(tokenizer)
    prefix = tokenizer("Below is a list of films the user watched.")["input_ids"]
    rests = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in
             (" Heat, Alien, Fargo:", " Babe:", " Casino and Se7en and Aliens:")]
    ids, mask = left_pad(rests, tokenizer.pad_token_id or 0)
    results = []
    for shared_prompt in (True, False):
        lm = CachedCausalLM(model, one_prompt_per_user=shared_prompt)
        results.append(constrained_beam_search(lm, ids, mask, trie, beams, prefix=prefix))
        assert lm.live_rows_only == shared_prompt
    (shared_scores, shared_leaves), (copied_scores, copied_leaves) = results
    torch.testing.assert_close(shared_scores, copied_scores, rtol=1e-5, atol=1e-5)
    assert torch.equal(shared_leaves, copied_leaves)


def test_gpt2_cache_and_positions_match_exhaustive_scoring(tiny_llm):
    """A second architecture (learned absolute positions, legacy layout) through the same cache code."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = tiny_llm
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                                      eos_token_id=tokenizer.eos_token_id)).eval()
    with torch.no_grad():
        gpt2.transformer.wte.weight.normal_(0, 1.0)
    check_exhaustive(gpt2, tokenizer, False, 1.0, True)
    check_exhaustive(gpt2, tokenizer, False, 1.0, False)


def check_exhaustive(model, tokenizer, renormalize, length_penalty, shared_prompt):
    trie, seqs = build(tokenizer)
    prompts = [tokenizer("Recommend a film after Heat and Alien:")["input_ids"],
               tokenizer("Films:")["input_ids"]]  # different lengths: exercises left padding
    ids, mask = left_pad(prompts, tokenizer.pad_token_id or 0)
    beams = len(TITLES)
    lm = CachedCausalLM(model, one_prompt_per_user=shared_prompt)
    scores, leaves = constrained_beam_search(lm, ids, mask, trie, beams,
                                             length_penalty=length_penalty, renormalize=renormalize)
    assert lm.live_rows_only == shared_prompt  # the layout under test was the one used
    for u, prompt in enumerate(prompts):
        got = {}
        for s, leaf in zip(scores[u].tolist(), leaves[u].tolist()):
            if leaf >= 0:
                for item in trie.items_of_leaves(torch.tensor([leaf]))[0].tolist():
                    got[item] = s
        assert set(got) == set(range(1, len(TITLES) + 1)), "every title is found"
        for i, seq in enumerate(seqs):
            expected = exact_score(model, prompt, seq, seqs, renormalize, length_penalty)
            assert got[i + 1] == pytest.approx(expected, abs=2e-4)
        assert scores[u].tolist() == sorted(scores[u].tolist(), reverse=True)


def test_fewer_beams_return_exact_scores_of_what_they_find(tiny_llm):
    model, tokenizer = tiny_llm
    trie, seqs = build(tokenizer)
    prompt = tokenizer("Films:")["input_ids"]
    ids, mask = left_pad([prompt], 0)
    scores, leaves = constrained_beam_search(CachedCausalLM(model), ids, mask, trie, 3)
    assert (leaves[0] >= 0).all()
    for s, leaf in zip(scores[0].tolist(), leaves[0].tolist()):
        item = int(trie.items_of_leaves(torch.tensor([leaf]))[0][0])
        assert s == pytest.approx(exact_score(model, prompt, seqs[item - 1], seqs, False, 1.0), abs=2e-4)
    # the best of 3 beams is at least as good as greedy and never better than the exhaustive best
    exhaustive = max(exact_score(model, prompt, s, seqs, False, 1.0) for s in seqs)
    greedy = _greedy_title(model, prompt, seqs)
    assert exact_score(model, prompt, greedy, seqs, False, 1.0) - 2e-4 <= scores[0, 0] <= exhaustive + 2e-4


def _greedy_title(model, prompt, seqs):
    """The title greedy constrained decoding spells: the likeliest valid token at every step."""
    spelled = []
    while not spelled or spelled not in seqs:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + spelled])).logits[0, -1]
        valid = sorted({s[len(spelled)] for s in seqs if s[:len(spelled)] == spelled and len(s) > len(spelled)})
        spelled.append(max(valid, key=lambda t: float(logits[t])))
    return spelled


@pytest.mark.parametrize("renormalize", [False, True])
def test_excluded_items_are_left_out_inside_the_search(tiny_llm, renormalize):
    """Titles of excluded items are never finished, subtrees holding only them are pruned, a title shared
    with a kept item stays; what remains equals exhaustive scoring of the remaining titles."""
    model, tokenizer = tiny_llm
    trie, seqs = build(tokenizer)
    excluded_items = [2, 4, 1]  # "Star Wars II", "Alien", and one of the two items titled "Star Wars"
    remaining = [s for i, s in enumerate(seqs, 1) if i not in (2, 4)]
    prompts = [tokenizer("Recommend a film after Heat and Alien:")["input_ids"], tokenizer("Films:")["input_ids"]]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id or 0)
    excluded = trie.excluded_nodes([excluded_items, excluded_items])
    scores, leaves = constrained_beam_search(CachedCausalLM(model), ids, mask, trie, len(TITLES),
                                             renormalize=renormalize, excluded=excluded)
    for u, prompt in enumerate(prompts):
        got = {}
        for s, leaf in zip(scores[u].tolist(), leaves[u].tolist()):
            if leaf >= 0:
                for item in trie.items_of_leaves(torch.tensor([leaf]))[0].tolist():
                    got[item] = s
        assert set(got) == set(range(1, len(TITLES) + 1)) - {2, 4}  # item 1 shares its title with item 13
        for item, score in got.items():
            expected = exact_score(model, prompt, seqs[item - 1], remaining, renormalize, 1.0)
            assert score == pytest.approx(expected, abs=2e-4)


def test_excluded_nodes_prune_whole_subtrees_only_when_every_title_below_is_excluded(tiny_llm):
    _, tokenizer = tiny_llm
    trie, seqs = build(tokenizer)
    star = [i for i, t in enumerate(TITLES, 1) if t.startswith("Star")]  # Star Wars (x2), Star Wars II, Star Trek
    node_of = {}
    for seq in seqs:  # the node after each prefix
        node = 0
        for k, tok in enumerate(seq):
            node = int(trie.child(torch.tensor([node]), torch.tensor([tok]))[0])
            node_of[tuple(seq[:k + 1])] = node
    first_token_of_star = node_of[tuple(seqs[star[0] - 1][:2])]  # '"' then 'Star'
    partial, whole = trie.excluded_nodes([star[:-1], star])
    assert not partial[first_token_of_star] and whole[first_token_of_star]  # item 13, "Star Wars", keeps it alive
    assert not partial[node_of[tuple(seqs[0])]] and not whole[0]  # one "Star Wars" item left; the root stays
