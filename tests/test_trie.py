import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_msl.core.trie import TokenTrie

EOS = 99


def dict_trie(sequences):
    """Independent reference: prefix tuple -> set of next tokens."""
    children = {}
    for seq in sequences:
        for k in range(len(seq)):
            children.setdefault(tuple(seq[:k]), set()).add(seq[k])
    return children


def walk(trie, seq):
    node = torch.tensor([0])
    for tok in seq:
        node = trie.child(node, torch.tensor([tok]))
    return int(node)


def children_of(trie, node):
    edges, valid = trie.children_padded(torch.tensor([node]))
    return set(trie.edge_token[edges[valid]].tolist())


def check_against_reference(sequences, items):
    trie = TokenTrie.build(sequences, items, n_items=1 + max(i for x in items for i in x))
    reference = dict_trie(sequences)
    for prefix, expected in reference.items():
        assert children_of(trie, walk(trie, prefix)) == expected
    for seq, owners in zip(sequences, items):
        leaf = int(trie.node_leaf[walk(trie, seq)])
        assert leaf >= 0
        got, _ = trie.items_of_leaves(torch.tensor([leaf]))
        assert set(owners) <= set(got.tolist())
        for item in owners:
            assert int(trie.item_leaf[item]) == leaf
    assert trie.max_depth == max(len(s) for s in sequences)
    return trie


def test_shared_title_and_prefix_title():
    seqs = [[5, 6, EOS], [5, 6, 7, EOS], [5, 6, EOS], [8, EOS]]
    items = [[1], [2], [3], [4]]
    trie = check_against_reference(seqs, items)
    # items 1 and 3 spell the same title: one leaf, both reachable
    assert int(trie.item_leaf[1]) == int(trie.item_leaf[3])
    assert children_of(trie, walk(trie, [5, 6])) == {7, EOS}
    assert int(trie.item_leaf[0]) == -1  # padding item has no title


def test_path_gives_node_before_each_token():
    seqs = [[1, 2, EOS], [1, 3, EOS]]
    trie = TokenTrie.build(seqs, [[1], [2]], n_items=3)
    tokens = torch.tensor([[1, 3, EOS], [1, 2, EOS]])
    path = trie.path(tokens, torch.tensor([3, 2]))
    assert path[0, 0] == 0 and path[1, 0] == 0
    assert children_of(trie, int(path[0, 1])) == {2, 3}
    assert path[1, 2] == -1  # past the given length


def test_child_rejects_unknown_token():
    trie = TokenTrie.build([[1, EOS]], [[1]], n_items=2)
    with pytest.raises(ValueError):
        trie.child(torch.tensor([0]), torch.tensor([7]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 12), min_size=0, max_size=6), min_size=1, max_size=25))
def test_random_catalogues_match_dict_trie(raw):
    seqs = [s + [EOS] for s in raw]  # duplicates and prefixes arise naturally
    check_against_reference(seqs, [[i + 1] for i in range(len(seqs))])
