"""Property-based tests (hypothesis) of the title trie, the prompt pieces and the loss maths.

Every property is checked against an independent brute-force computation: plain Python sets
and dicts over the list of token sequences for the trie, float64 numpy for the losses. The
trie is tested on raw random integer catalogues and on titles tokenized by the real SmolLM2
tokenizer (Unicode, titles that are prefixes of others, duplicates, one-token titles).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from recbole_msl.core.losses import (
    AtsEstimate,
    ats_estimate,
    ats_positions,
    ats_statistics,
    ats_update,
    lm_loss_terms,
    masked_softmax_loss_terms,
)
from recbole_msl.core.trie import TokenTrie
from recbole_msl.lm.prompt import DEFAULT_TEMPLATE, PromptBuilder, quote

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
EOS = 1000  # above every raw token, like a real EOS id


# ------------------------------------------------------------------ references
def reference(sequences):
    """Brute force over the sequence list: next-token sets per prefix, and items per distinct sequence."""
    nxt = {}
    for seq in sequences:
        for k in range(len(seq)):
            nxt.setdefault(tuple(seq[:k]), set()).add(seq[k])
    return nxt


def walk(trie, seq):
    """Node reached by ``seq`` from the root, one child() call per token."""
    node = torch.zeros(1, dtype=torch.long)
    for tok in seq:
        node = trie.child(node, torch.tensor([tok]))
    return int(node)


def check_trie(sequences, items, n_items):
    """All trie properties for one catalogue: (sequences ending with EOS, item list per sequence)."""
    trie = TokenTrie.build(sequences, items, n_items)
    nxt = reference(sequences)
    by_sequence = {}
    for seq, owners in zip(sequences, items):
        by_sequence.setdefault(tuple(seq), set()).update(owners)

    # sizes: one node per distinct prefix (the root is the empty one), one leaf per distinct sequence
    prefixes = {tuple(s[:k]) for s in sequences for k in range(len(s) + 1)}
    assert trie.num_nodes == len(prefixes)
    assert trie.num_leaves == len(by_sequence)
    assert trie.max_depth == max(len(s) for s in sequences)

    node_of = {prefix: walk(trie, prefix) for prefix in prefixes}
    assert len(set(node_of.values())) == len(prefixes)  # distinct prefixes, distinct nodes
    for prefix, node in node_of.items():
        # valid next tokens = brute-force set; children_padded agrees with child()
        edges, valid = trie.children_padded(torch.tensor([node]))
        tokens = trie.edge_token[edges[valid]].tolist()
        assert set(tokens) == nxt.get(prefix, set())
        assert tokens == sorted(tokens) and len(tokens) == len(set(tokens))  # sorted, no duplicates
        assert int(trie.num_children(torch.tensor([node]))) == len(tokens) == int(valid.sum())
        for edge in edges[valid].tolist():
            assert int(trie.child(torch.tensor([node]), trie.edge_token[edge:edge + 1])) == edge + 1
            assert node_of[prefix + (int(trie.edge_token[edge]),)] == edge + 1
        for missing in {-1, 0, 7, EOS + 1, 5 * EOS} - set(tokens):  # any other token leaves the trie
            with pytest.raises(ValueError):
                trie.child(torch.tensor([node]), torch.tensor([missing]))
        # a node is a leaf exactly when its prefix is a whole sequence, and maps back to its items
        leaf = int(trie.node_leaf[node])
        assert (leaf >= 0) == (prefix in by_sequence)
        if leaf >= 0:
            got, owner = trie.items_of_leaves(torch.tensor([leaf]))
            assert sorted(got.tolist()) == sorted(by_sequence[prefix]) and set(owner.tolist()) <= {0}
            for item in by_sequence[prefix]:
                assert int(trie.item_leaf[item]) == leaf
    # items on no sequence have no leaf
    titled = set().union(*by_sequence.values())
    assert all(int(trie.item_leaf[i]) == -1 for i in range(n_items) if i not in titled)

    # path(): node before each token of a right-padded batch, -1 past each length, == walk()
    width = max(len(s) for s in sequences)
    batch = torch.tensor([s + [0] * (width - len(s)) for s in sequences])
    lengths = torch.tensor([len(s) for s in sequences])
    path = trie.path(batch, lengths)
    for row, seq in enumerate(sequences):
        assert path[row].tolist() == [node_of[tuple(seq[:k])] for k in range(len(seq))] + [-1] * (width - len(seq))
    # items_of_leaves on several leaves at once: owners index into the query
    leaves = torch.arange(trie.num_leaves).flip(0)
    got, owner = trie.items_of_leaves(leaves)
    assert sorted(zip(owner.tolist(), got.tolist())) == sorted(
        (k, i) for k, leaf in enumerate(leaves.tolist())
        for i in trie.leaf_items[trie.leaf_item_ptr[leaf]:trie.leaf_item_ptr[leaf + 1]].tolist())
    return trie


# ---------------------------------------------------------- trie: raw integers
raw_catalogue = st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=6), min_size=1, max_size=30)


@FAST
@given(raw_catalogue)
def test_trie_matches_brute_force_on_random_catalogues(raw):
    """Duplicates, prefixes ([1, 2] and [1, 2, 3]) and one-token sequences ([EOS]) arise naturally."""
    sequences = [s + [EOS] for s in raw]
    check_trie(sequences, [[i + 1] for i in range(len(sequences))], n_items=len(sequences) + 3)


@FAST
@given(raw_catalogue, st.data())
def test_trie_pools_items_of_one_sequence_on_one_leaf(raw, data):
    """Several items per sequence and several sequences per item list: leaves pool exactly their items."""
    sequences = [s + [EOS] for s in raw]
    n_items = 2 * len(sequences) + 1
    items = [data.draw(st.lists(st.integers(1, n_items - 1), min_size=1, max_size=2, unique=True))
             for _ in sequences]
    used = [i for x in items for i in x]
    assume(len(used) == len(set(used)))  # an item spells one title
    check_trie(sequences, items, n_items)


@FAST
@given(raw_catalogue, st.permutations(list(range(30))))
def test_trie_does_not_depend_on_catalogue_order(raw, order):
    sequences = [s + [EOS] for s in raw]
    items = [[i + 1] for i in range(len(sequences))]
    perm = [k for k in order if k < len(sequences)]
    a = TokenTrie.build(sequences, items, len(sequences) + 1)
    b = TokenTrie.build([sequences[k] for k in perm], [items[k] for k in perm], len(sequences) + 1)
    for field in ("child_ptr", "edge_token", "edge_key", "node_leaf"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    for seq in sequences:  # same leaf, same items
        la, lb = int(a.node_leaf[walk(a, seq)]), int(b.node_leaf[walk(b, seq)])
        assert la == lb
        assert sorted(a.items_of_leaves(torch.tensor([la]))[0].tolist()) == \
            sorted(b.items_of_leaves(torch.tensor([lb]))[0].tolist())


# --------------------------------------------------- trie: real tokenizer titles
# short pieces make prefixes, duplicates and one-token titles likely; st.text adds arbitrary Unicode
# "", ",", ":", "][" and '"' quote to ONE token in SmolLM2's vocabulary ('""', '","', ...)
_pieces = st.sampled_from(["", ",", ":", "][", "a", "I", "The", "Heat", "Heat 2", "Toy Story", "Toy Story 2", " ", "\"", "'",
                           "Amélie", "東京物語", "Ёлки", "🙂", "x" * 30, "é", "e\u0301", "\u00a0", "Léon: The Professional"])
_titles = st.lists(st.one_of(_pieces, st.text(min_size=1, max_size=12),
                             st.builds(lambda a, b: a + b, _pieces, _pieces)), min_size=1, max_size=16)


def build_prompts(tokenizer, titles, max_length=4096):
    return PromptBuilder(tokenizer, [None, *titles], DEFAULT_TEMPLATE, "Recommend.", "Seen: {history}", max_length)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(_titles)
@example(["Heat", "Heat 2", "Heat", "", ",", ":", '"', "Amélie", "東京物語", "a", "a"])
def test_trie_over_tokenized_titles(smol_tokenizer, titles):
    """Each title's token path is in the trie, its leaf maps back to exactly the items whose quoted
    title tokenizes to the same ids, and the valid sets match brute force over the tokenized catalogue."""
    prompts = build_prompts(smol_tokenizer, titles)
    sequences, items = prompts.sequences()
    trie = check_trie(sequences, items, n_items=len(titles) + 1)
    eos = smol_tokenizer.eos_token_id
    if "" in titles:  # the example above really has one-token titles
        assert len(prompts.response(1 + titles.index(""))) == 2
    ids = {item: tuple(smol_tokenizer(quote(t), add_special_tokens=False)["input_ids"]) + (eos,)
           for item, t in enumerate(titles, 1)}
    for item, seq in ids.items():
        assert list(seq) == prompts.response(item)  # the response is the title tokenized on its own
        leaf = int(trie.node_leaf[walk(trie, seq)])
        assert leaf == int(trie.item_leaf[item]) >= 0
        got, _ = trie.items_of_leaves(torch.tensor([leaf]))
        assert sorted(got.tolist()) == sorted(i for i, s in ids.items() if s == seq)
    # identical titles always share a leaf
    for a, ta in enumerate(titles, 1):
        for b, tb in enumerate(titles, 1):
            if ta == tb:
                assert int(trie.item_leaf[a]) == int(trie.item_leaf[b])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(_titles, st.lists(st.integers(0, 15), min_size=0, max_size=12), st.integers(0, 120))
def test_prompt_is_the_longest_fitting_suffix_of_the_history(smol_tokenizer, titles, picks, slack):
    """The prompt is the tokenizer's ids of the prompt text with the newest titles, never longer than
    the context minus the longest response, and no older title could have been kept as well."""
    pieces = build_prompts(smol_tokenizer, titles)
    longest = max(range(1, len(titles) + 1), key=lambda i: len(pieces.title_ids[i]))
    smallest = len(smol_tokenizer(pieces.text([longest]))["input_ids"]) + pieces.max_response
    prompts = build_prompts(smol_tokenizer, titles, smallest + slack)  # the smallest context accepted, + slack
    history = [1 + p % len(titles) for p in picks]
    ids = prompts.prompt(history)
    assert len(ids) + prompts.max_response <= smallest + slack

    def encoded(kept):
        return smol_tokenizer(prompts.text(kept))["input_ids"]

    kept = next((history[s:] for s in range(len(history)) if len(encoded(history[s:])) <= prompts.max_prompt), [])
    assert ids == encoded(kept)
    if history:  # the newest title always fits
        assert kept and kept[-1] == history[-1]


# ------------------------------------------------------------------------ losses
def np_logsumexp(x):
    top = np.max(x)
    return top + math.log(np.sum(np.exp(x - top)))


@st.composite
def valid_sets(draw, max_rows=6, max_cols=12):
    """[P, K] float64 logits, a valid mask with >= 1 valid column per row, and a valid target column."""
    rows, cols = draw(st.integers(1, max_rows)), draw(st.integers(1, max_cols))
    logits = np.array(draw(st.lists(st.floats(-30, 30, allow_nan=False), min_size=rows * cols,
                                    max_size=rows * cols))).reshape(rows, cols)
    mask = np.array(draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols))).reshape(rows, cols)
    target = np.array([draw(st.integers(0, cols - 1)) for _ in range(rows)])
    mask[np.arange(rows), target] = True
    return logits, mask, target


def as_tensors(logits, mask, target, dtype=torch.float64):
    return torch.tensor(logits, dtype=dtype), torch.tensor(mask), torch.tensor(target)


@FAST
@given(valid_sets(), st.floats(0.05, 20.0))
def test_msl_equals_an_independent_dense_computation(case, tau):
    """loss_t = tau * (logsumexp_{valid} f / tau - f_pos / tau), computed in float64 numpy."""
    logits, mask, target = case
    got = masked_softmax_loss_terms(*as_tensors(logits, mask, target), tau)
    expected = [tau * (np_logsumexp(logits[p][mask[p]] / tau) - logits[p, target[p]] / tau)
                for p in range(len(logits))]
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-4)
    assert bool((got >= -1e-4).all())  # a softmax probability is at most 1
    single = mask.sum(1) == 1
    assert bool((got[torch.tensor(single)].abs() < 1e-5).all())  # one valid token: certain, zero loss


@FAST
@given(valid_sets(), st.floats(0.05, 20.0), st.floats(-50, 50), st.data())
def test_msl_ignores_padding_shifts_and_column_order(case, tau, shift, data):
    logits, mask, target = case
    base = masked_softmax_loss_terms(*as_tensors(logits, mask, target), tau)
    junk = np.where(mask, logits, data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30])))
    torch.testing.assert_close(masked_softmax_loss_terms(*as_tensors(junk, mask, target), tau), base)
    # float32 maths: tau * logsumexp(f / tau) carries about one ulp of max |f|
    atol = 1e-6 + 8 * float(np.finfo(np.float32).eps) * (float(np.abs(logits).max()) + abs(shift))
    shifted = masked_softmax_loss_terms(*as_tensors(logits + shift, mask, target), tau)
    torch.testing.assert_close(shifted, base, rtol=1e-6, atol=atol)
    perm = np.array(data.draw(st.permutations(list(range(logits.shape[1])))))
    inverse = np.argsort(perm)
    permuted = masked_softmax_loss_terms(*as_tensors(logits[:, perm], mask[:, perm], inverse[target]), tau)
    torch.testing.assert_close(permuted, base, rtol=1e-6, atol=atol)  # summation order changes rounding


@FAST
@given(valid_sets(), st.floats(0.05, 20.0))
def test_msl_gradient_is_softmax_minus_onehot_on_valid_tokens(case, tau):
    logits, mask, target = case
    x, m, t = as_tensors(logits, mask, target)
    x.requires_grad_(True)
    masked_softmax_loss_terms(x, m, t, tau).sum().backward()
    probs = np.zeros_like(logits)
    for p in range(len(logits)):
        z = logits[p][mask[p]] / tau
        probs[p][mask[p]] = np.exp(z - np.max(z)) / np.sum(np.exp(z - np.max(z)))
    probs[np.arange(len(logits)), target] -= 1.0
    # zero on padding columns; float32 maths: logsumexp of f / tau carries an ulp of |f| / tau
    atol = 1e-6 + 4 * float(np.finfo(np.float32).eps) * float(np.abs(logits).max()) / tau
    np.testing.assert_allclose(x.grad.numpy(), probs, rtol=1e-5, atol=atol)


@FAST
@given(valid_sets(max_cols=40), st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_lml_equals_cross_entropy(case, dtype):
    """LML is full-vocabulary cross-entropy, in float32 at least; MSL with every token valid and tau = 1 equals it."""
    logits, _, target = case
    x = torch.tensor(logits, dtype=dtype)
    got = lm_loss_terms(x, torch.tensor(target))
    assert got.dtype in (torch.float32, torch.float64)
    ref = x.double().numpy()
    expected = [np_logsumexp(ref[p]) - ref[p, target[p]] for p in range(len(ref))]
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(x.float(), torch.tensor(target),
                                                                      reduction="none").to(got.dtype))
    everything = torch.ones_like(x, dtype=torch.bool)
    torch.testing.assert_close(masked_softmax_loss_terms(x, everything, torch.tensor(target), 1.0).double(),
                               got.double(), rtol=1e-5, atol=1e-4)


@FAST
@given(valid_sets(max_rows=10, max_cols=20), st.data())
def test_ats_statistics_are_additive_over_batch_splits(case, data):
    """Statistics of a batch = sum over any split of its positions (what all-reduce relies on)."""
    logits, mask, target = case
    x, m, t = as_tensors(logits, mask, target)
    whole = ats_statistics(x, m, t)
    cut = sorted(data.draw(st.lists(st.integers(0, len(logits)), max_size=3)))
    bounds = [0, *cut, len(logits)]
    parts = [ats_statistics(x[a:b], m[a:b], t[a:b]) for a, b in itertools.pairwise(bounds)]
    torch.testing.assert_close(torch.stack(parts).sum(0), whole, rtol=1e-12, atol=1e-9)
    positives = logits[np.arange(len(logits)), target]
    valid = logits[mask]
    np.testing.assert_allclose(whole.numpy(), [len(positives), positives.sum(), valid.size, valid.sum(),
                                               (valid ** 2).sum(), mask.sum()], rtol=1e-12, atol=1e-9)


@FAST
@given(valid_sets(max_rows=10, max_cols=30), st.floats(0.01, 2.0), st.floats(0.1, 3.0), st.floats(0.0, 5.0))
def test_ats_estimate_equals_the_closed_form(case, eta, low, width):
    """tau_hat = (delta + sqrt(max(delta^2 - 2 C var, 0))) / 2C with C = ln(mean m * eta), clamped; None if C <= 0."""
    logits, mask, target = case
    high = low + width
    estimate = ats_estimate(ats_statistics(*as_tensors(logits, mask, target)), eta, (low, high))
    positives = logits[np.arange(len(logits)), target]
    valid = logits[mask]
    c = math.log(mask.sum(1).mean() * eta)
    if c <= 0:
        assert estimate is None
        return
    var = float(np.var(valid, ddof=1)) if valid.size > 1 else 0.0
    delta = float(positives.mean() - valid.mean())
    tau_hat = (delta + math.sqrt(max(delta * delta - 2 * c * var, 0.0))) / (2 * c)
    assert estimate.raw == pytest.approx(tau_hat, rel=1e-7, abs=1e-9)
    assert estimate.clamped == pytest.approx(min(max(tau_hat, low), high), rel=1e-7, abs=1e-9)
    assert low <= estimate.clamped <= high
    assert estimate.delta == pytest.approx(delta, rel=1e-7, abs=1e-9)
    assert estimate.var == pytest.approx(var, rel=1e-7, abs=1e-9)


@FAST
@given(st.lists(st.integers(1, 4), min_size=0, max_size=8), st.data())
def test_ats_positions_pick_each_samples_largest_valid_set(run_lengths, data):
    """Brute force: for each sample, the first of its positions with the most valid tokens."""
    sample = [s for s, n in enumerate(run_lengths) for _ in range(n)]
    num_valid = data.draw(st.lists(st.integers(2, 40), min_size=len(sample), max_size=len(sample)))
    got = ats_positions(torch.tensor(sample, dtype=torch.long), torch.tensor(num_valid, dtype=torch.long))
    expected = [False] * len(sample)
    for s in set(sample):
        mine = [k for k, o in enumerate(sample) if o == s]
        expected[max(mine, key=lambda k: (num_valid[k], -k))] = True
    assert got.tolist() == expected


@FAST
@given(st.floats(0.1, 10.0), st.one_of(st.none(), st.floats(0.1, 10.0)), st.floats(0.0, 1.0))
def test_ats_update_is_a_convex_step(tau, tau_hat, alpha):
    estimate = None if tau_hat is None else AtsEstimate(delta=0.0, var=0.0, m=2.0, raw=tau_hat, clamped=tau_hat)
    new = ats_update(tau, estimate, alpha)
    if tau_hat is None:
        assert new == tau
    else:
        assert min(tau, tau_hat) - 1e-12 <= new <= max(tau, tau_hat) + 1e-12
        assert new == pytest.approx((1 - alpha) * tau + alpha * tau_hat)
