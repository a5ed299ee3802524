"""train_format sequence: a user's training titles listed once, every title after the first a target.

Checked against references computed one target at a time: the packed loss equals the per-target losses on the
sequence's own prefixes (causal attention), targets are exactly trie paths, ATS reads each target's title
choice, and no chunk holds a validation or test item.
"""

import pytest
import torch
import torch.nn.functional as F

from recbole_msl.core.losses import ats_estimate
from recbole_msl.core.sequences import chunk_sequence, user_sequences, window_width
from recbole_msl.errors import ConfigError
from recbole_msl.model.llmmsl import LLMMSL
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset, data_preparation
from recbole_msl.trainer.sequence_batches import SequenceExamples


# ------------------------------------------------------------------ pure functions
def test_user_sequences_join_chained_windows_and_keep_the_rest_apart():
    users = [1, 1, 1, 2, 2, 2]
    histories = [[10], [10, 11], [11, 12], [5], [7, 8], [8, 9]]  # width 2: user 1 chains, user 2 breaks once
    targets = [11, 12, 13, 6, 9, 4]
    out = user_sequences(users, histories, targets, width=2)
    assert out == [(1, [10, 11, 12, 13], 1), (2, [5, 6], 1), (2, [7, 8, 9, 4], 2)]
    # every target once, after its own history, and nothing but targets after each sequence's context
    assert sorted(t for s in out for t in s.items[s.context:]) == sorted(targets)
    for history, target in zip(histories, targets):
        assert any(s[s.index(target) - len(history):s.index(target)] == history for _, s, _ in out if target in s)


def test_a_history_shorter_than_the_window_that_is_not_the_whole_sequence_does_not_chain():
    out = user_sequences([1, 1], [[1, 2], [2]], [3, 4], width=5)
    assert out == [(1, [1, 2, 3], 2), (1, [2, 4], 1)]


def test_a_benchmark_split_of_short_windows_chains_at_its_own_width_and_trains_each_row_once():
    """Sliding windows of at most 3 history items (a benchmark file) read with MAX_ITEM_LIST_LENGTH 50: the
    window width is the split's (3), so a user's windows join into one sequence whose first window's history is
    context only, and the chunks' targets are exactly the rows' targets (at width 50 nothing would chain and
    every history item would be trained again)."""
    items = [1, 2, 3, 4, 5, 6, 7, 8]
    histories = [items[max(0, t - 3):t] for t in range(3, 8)]  # the first row already holds 3 history items
    targets = items[3:8]
    width = window_width([len(h) for h in histories], 50)
    assert width == 3 and window_width([], 50) == 50 and window_width([60], 50) == 50
    out = user_sequences([9] * 5, histories, targets, width)
    assert out == [(9, items, 3)]
    chunks = chunk_sequence(out[0].items, 50, 1, context=out[0].context)
    assert [c.context for c in chunks] == [3] and [t for c in chunks for t in c[c.context:]] == targets
    assert len(user_sequences([9] * 5, histories, targets, 50)) == 5  # the width of 50 chains nothing


@pytest.mark.parametrize("context, max_items, expected", [
    (3, 50, [([1, 2, 3, 4, 5, 6, 7, 8], 3)]),               # the whole history fits beside the targets
    (3, 4, [([1, 2, 3, 4], 3), ([4, 5, 6, 7], 1), ([7, 8], 1)]),  # later chunks keep min_history of context
    (6, 4, [([4, 5, 6, 7], 3), ([7, 8], 1)]),               # a context past a chunk's room starts max_items - 1 back
    (0, 4, [([1, 2, 3, 4], 1), ([4, 5, 6, 7], 1), ([7, 8], 1)]),  # below min_history: min_history rules
])
def test_a_sequences_context_is_never_a_target(context, max_items, expected):
    chunks = chunk_sequence([1, 2, 3, 4, 5, 6, 7, 8], max_items, 1, context=context)
    assert [(list(c), c.context) for c in chunks] == expected


def test_a_long_starting_history_keeps_its_latest_items_that_fit_the_token_budget():
    chunks = chunk_sequence([1, 2, 3, 4, 5, 6, 7, 8], 50, 1, cost=lambda i: 3, budget=12, context=6)
    assert [(list(c), c.context) for c in chunks] == [([4, 5, 6, 7], 3), ([7, 8], 1)]


@pytest.mark.parametrize("n, max_items, min_history", [(1, 4, 1), (2, 4, 1), (10, 4, 1), (23, 5, 2), (9, 3, 0),
                                                       (50, 50, 1), (51, 50, 1)])
def test_chunks_make_every_item_after_the_first_min_history_a_target_once(n, max_items, min_history):
    items = list(range(100, 100 + n))
    chunks = chunk_sequence(items, max_items, min_history)
    targets = [i for chunk in chunks for i in chunk[min_history:]]
    assert targets == items[min_history:]
    assert all(min_history < len(c) <= max_items for c in chunks)
    for chunk in chunks:  # consecutive items of the sequence
        start = items.index(chunk[0])
        assert chunk == items[start:start + len(chunk)]


def test_chunks_respect_a_token_budget():
    items = list(range(20))
    chunks = chunk_sequence(items, 10, 1, cost=lambda i: 3, budget=12)
    assert all(len(c) * 3 <= 12 for c in chunks)
    assert [i for c in chunks for i in c[1:]] == items[1:]
    with pytest.raises(ValueError):
        chunk_sequence(items, 10, 1, cost=lambda i: 7, budget=12)
    with pytest.raises(ValueError):
        chunk_sequence(items, 3, 3)


# ------------------------------------------------------------------ on ml-100k with the tiny backbone
def make_config(tiny_llm_dir, tmp_path, **extra):
    overrides = {"llm_path": tiny_llm_dir, "num_beams": 10, "eval_max_users": 4, "show_progress": False,
                 "checkpoint_dir": str(tmp_path), "train_format": "sequence", "MAX_ITEM_LIST_LENGTH": 6, **extra}
    return Config(model="LLMMSL", dataset="ml-100k", config_dict=overrides)


@pytest.fixture(scope="module")
def setup(tiny_llm_dir, tmp_path_factory):
    config = make_config(tiny_llm_dir, tmp_path_factory.mktemp("saved"))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = LLMMSL(config, train._dataset)
    model.eval()
    examples = SequenceExamples(train._dataset, model, seed=2020)
    return config, model, examples, train, valid, test


def _rows_by_user(split, model):
    inter = split.dataset.inter_feat if hasattr(split, "dataset") else split._dataset.inter_feat
    users = inter[split._dataset.uid_field].tolist()
    return users, inter[model.POS_ITEM_ID].tolist()


def test_chunks_hold_only_training_items_and_every_training_target_once(setup):
    _, model, examples, train, valid, test = setup
    inter = train._dataset.inter_feat
    train_items: dict[int, list[int]] = {}
    for user, seq, n, target in zip(inter[train._dataset.uid_field].tolist(), inter[model.ITEM_SEQ].tolist(),
                                    inter[model.ITEM_SEQ_LEN].tolist(), inter[model.POS_ITEM_ID].tolist()):
        train_items.setdefault(user, []).extend(seq[:n] + [target])
    held_out: dict[int, set[int]] = {}
    for split in (valid, test):
        users, targets = _rows_by_user(split, model)
        for user, target in zip(users, targets):
            held_out.setdefault(user, set()).add(target)
    for user, chunk in zip(examples.owners, examples.chunks):
        assert set(chunk) <= set(train_items[user])
        # an item the user met only in validation or test never enters one of the user's chunks
        assert not (set(chunk) & (held_out.get(user, set()) - set(train_items[user])))
    per_user: dict[int, list[int]] = {}
    for user, chunk in zip(examples.owners, examples.chunks):
        per_user.setdefault(user, []).extend(chunk[1:])
    targets = inter[model.POS_ITEM_ID].tolist()
    assert examples.targets == len(targets)  # every training window's target is a target exactly once
    for user, items in per_user.items():
        rows = [t for u, t in zip(inter[train._dataset.uid_field].tolist(), targets) if u == user]
        assert items == rows
    assert max(len(c) for c in examples.chunks) == model.opts.history_length


def test_chunks_never_hold_a_held_out_position(setup):
    """Stronger than items: the chunks of a user, joined, are the user's training part in time order, so the
    validation and test positions (the last two of leave-one-out) are never inside."""
    _, model, examples, train, valid, _test = setup
    dataset = train._dataset
    last_train = {}
    inter = dataset.inter_feat
    for user, target in zip(inter[dataset.uid_field].tolist(), inter[model.POS_ITEM_ID].tolist()):
        last_train[user] = target
    for user, target in zip(*_rows_by_user(valid, model)):
        chunks = [c for u, c in zip(examples.owners, examples.chunks) if u == user]
        assert chunks[-1][-1] == last_train[user]  # the user's last chunk ends with the last training target


def test_targets_are_exactly_their_trie_paths(setup):
    _, model, examples, *_ = setup
    for chunk in examples.chunks[:50]:
        packed = model.prompts.pack(chunk, model.opts.sequence_min_history)
        assert packed.items == chunk[model.opts.sequence_min_history:]
        for item, start in zip(packed.items, packed.starts):
            path = model.prompts.title_ids[item] + [model.prompts.end]
            assert packed.ids[start:start + len(path)] == path
            nodes = model.trie.path(torch.tensor([path]), torch.tensor([len(path)]))[0]
            leaf = model.trie.child(nodes[-1:], torch.tensor(path[-1:]))
            assert int(model.trie.node_leaf[leaf]) == int(model.trie.item_leaf[item])  # the walk ends at the item
    assert packed.ids[:len(model.prompts.head_ids)] == model.prompts.head_ids


def test_ranking_prompt_lists_titles_with_the_training_boundaries(setup):
    _, model, *_ = setup
    history = [1, 2, 3]
    prompt = model.ranking_prompt(history)
    packed = model.prompts.pack(history + [4], 0)
    assert packed.ids[:len(prompt)] == prompt  # the prompt is the packed list up to the next title
    assert packed.starts[-1] == len(prompt)


def _per_target_reference(model, chunks, tau, loss):
    """Each target alone: its chunk's prefix up to the target as the prompt, its trie path as the response."""
    terms = []
    with torch.no_grad():
        for chunk in chunks:
            packed = model.prompts.pack(chunk, model.opts.sequence_min_history)
            for item, start in zip(packed.items, packed.starts):
                prompt, path = packed.ids[:start], model.prompts.response(item)
                logits = model.llm(input_ids=torch.tensor([prompt + path[:-1]])).logits[0, len(prompt) - 1:]
                node = torch.tensor([0])
                for k, token in enumerate(path):
                    edges, valid = model.trie.children_padded(node)
                    tokens = model.trie.edge_token[edges[valid]]
                    if loss == "lml":
                        terms.append(F.cross_entropy(logits[k:k + 1], torch.tensor([token])))
                    elif len(tokens) > 1:
                        masked = torch.full_like(logits[k], float("-inf"))
                        masked[tokens] = logits[k, tokens] / tau
                        terms.append(tau * F.cross_entropy(masked[None], torch.tensor([token])))
                    node = model.trie.child(node, torch.tensor([token]))
    return torch.stack(terms)


@pytest.mark.parametrize("loss", ["msl", "lml"])
@pytest.mark.parametrize("share", [True, False])
def test_packed_loss_equals_the_per_target_losses_on_the_prefixes(setup, loss, share):
    _, model, examples, *_ = setup
    chunks = examples.chunks[:3]
    saved = model.opts.loss, model.opts.adaptive_tau, model.tau, model.opts.share_prompt_prefix
    try:
        model.opts.loss, model.opts.adaptive_tau, model.tau = loss, False, 2.5
        model.opts.share_prompt_prefix = share
        total, count = model.loss_terms(chunks)
        reference = _per_target_reference(model, chunks, 2.5, loss)
    finally:
        model.opts.loss, model.opts.adaptive_tau, model.tau, model.opts.share_prompt_prefix = saved
    assert count == len(reference) > 0
    torch.testing.assert_close(total.detach(), reference.sum(), rtol=1e-4, atol=1e-3)


def test_ats_estimate_equals_a_direct_computation_at_each_targets_title_choice(setup):
    _, model, examples, *_ = setup
    chunks = examples.chunks[:3]
    saved = model.opts.adaptive_tau, model.tau, model.ats_pending.clone()
    positives, valids, sizes = [], [], []
    with torch.no_grad():
        for chunk in chunks:
            packed = model.prompts.pack(chunk, model.opts.sequence_min_history)
            for item, start in zip(packed.items, packed.starts):
                path = model.prompts.response(item)
                logits = model.llm(input_ids=torch.tensor([packed.ids[:start + len(path) - 1]])).logits[0]
                node, best = torch.tensor([0]), None
                for k, token in enumerate(path):  # the position with the largest valid set, first on ties
                    edges, valid = model.trie.children_padded(node)
                    tokens = model.trie.edge_token[edges[valid]]
                    if best is None or len(tokens) > len(best[1]):
                        best = (start - 1 + k, tokens, token)
                    node = model.trie.child(node, torch.tensor([token]))
                position, tokens, token = best
                row = logits[position].double()
                positives.append(row[token])
                valids.append(row[tokens])
                sizes.append(len(tokens))
    try:
        model.opts.adaptive_tau = True
        model.ats_pending = torch.zeros_like(model.ats_pending)
        model.train()
        with torch.no_grad():
            model.loss_terms(chunks)
        got = ats_estimate(model.ats_pending, model.opts.ats_eta, model.opts.ats_range)
    finally:
        model.eval()
        model.opts.adaptive_tau, model.tau, model.ats_pending = saved
    everything = torch.cat(valids)
    delta = float(torch.stack(positives).mean() - everything.mean())
    assert got.delta == pytest.approx(delta, rel=1e-5, abs=1e-6)
    assert got.var == pytest.approx(float(everything.var()), rel=1e-5)
    assert got.m == pytest.approx(sum(sizes) / len(sizes))
    assert min(sizes) > 100  # a choice among ml-100k's titles, not among quote tokens


def test_predict_equals_beam_scores_in_the_sequence_format(setup):
    _, model, _, _, valid, _ = setup
    batch = next(iter(valid))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        found = torch.isfinite(scores[0]).nonzero().squeeze(1)[:4]
        pairs = batch[:1].repeat_interleave(len(found))
        pairs.update(type(batch)({model.ITEM_ID: found}))
        torch.testing.assert_close(model.predict(pairs), scores[0, found], rtol=1e-4, atol=1e-4)
    assert torch.isfinite(scores).sum(1).min() >= model.opts.num_beams


@pytest.mark.parametrize("override, message", [
    ({"train_format": "packed"}, "train_format must be window or sequence"),
    ({"sequence_min_history": 6}, "sequence_min_history must be an integer from 0 to 5"),
    ({"sequence_min_history": -1}, "sequence_min_history must be an integer from 0 to 5"),
    ({"eval_history": 7}, "eval_history 7 exceeds MAX_ITEM_LIST_LENGTH 6"),
    ({"max_seq_length": 60}, "train_format sequence needs"),
])
def test_bad_sequence_options_give_one_line_errors(tiny_llm_dir, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as info:
        config = make_config(tiny_llm_dir, tmp_path, **override)
        LLMMSL(config, create_dataset(config))
    assert "\n" not in str(info.value)


def test_processes_split_each_epoch_into_disjoint_shares(setup):
    """Under torchrun every rank draws the same order and takes its own share: together, one process's epoch."""
    _, model, examples, train, *_ = setup
    total = len(examples.chunks)
    whole = [tuple(c) for batch in examples.epoch(3, total, 8) for c in batch]
    shares = [SequenceExamples(train._dataset, model, seed=2020, rank=r, world_size=2) for r in (0, 1)]
    parts = [[tuple(c) for batch in s.epoch(3, total, 4) for c in batch] for s in shares]
    assert len(parts[0]) + len(parts[1]) == len(whole) == total == shares[0].share() + shares[1].share()
    assert sorted(parts[0] + parts[1]) == sorted(whole)
    again = [tuple(c) for batch in examples.epoch(3, total, 8) for c in batch]
    assert again == whole and whole != [tuple(c) for batch in examples.epoch(4, total, 8) for c in batch]


def test_epochs_smaller_than_a_pass_walk_through_it(setup):
    """train_samples_per_epoch below a pass: consecutive epochs continue the pass (every chunk once) and then start
    the next pass's shuffle, on one process or split over two."""
    _, model, examples, train, *_ = setup
    total = len(examples.chunks)
    size = total // 3 + 1  # three epochs end one chunk into the second pass
    index = {id(chunk): i for i, chunk in enumerate(examples.chunks)}
    drawn = [[index[id(c)] for batch in examples.epoch(e, size, 5) for c in batch] for e in range(3)]
    stream = [i for epoch in drawn for i in epoch]
    assert [len(e) for e in drawn] == [size] * 3
    assert sorted(stream[:total]) == list(range(total)), "the first pass holds every chunk once"
    assert stream[:total] != list(range(total)), "shuffled"
    shares = [SequenceExamples(train._dataset, model, seed=2020, rank=r, world_size=2) for r in (0, 1)]
    for e in range(3):
        parts = [[tuple(c) for batch in s.epoch(e, size, 4) for c in batch] for s in shares]
        assert [len(p) for p in parts] == [s.share(size) for s in shares]
        assert sorted(parts[0] + parts[1]) == sorted(tuple(examples.chunks[i]) for i in drawn[e])


def test_a_benchmark_split_of_sliding_windows_trains_each_rows_target_once(tiny_llm_dir, tmp_path):
    """Benchmark files of sliding windows (at most 3 history items, as the Amazon Books split holds 10) read with
    MAX_ITEM_LIST_LENGTH 6: each user's windows join into one sequence, its first window's history is context, and
    a pass trains exactly the rows' targets, each once, with every history item of its row before it."""
    folder = tmp_path / "data" / "win"
    folder.mkdir(parents=True)
    names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo"]
    (folder / "win.item").write_text("item_id:token\ttitle:token_seq\n"
                                     + "".join(f"{i}\t{name} story\n" for i, name in enumerate(names, 1)))
    lines = {"train": [], "valid": [], "test": []}
    histories = {1: [1, 2, 3, 4, 5, 6, 7, 8], 2: [9, 10, 11, 1, 2, 3]}
    for user, items in histories.items():
        for t in range(3, len(items)):
            split = "test" if t == len(items) - 1 else "valid" if t == len(items) - 2 else "train"
            history = " ".join(map(str, items[t - 3:t]))
            lines[split].append(f"{user}\t{history}\t{items[t]}\t{1000 * user + t}\n")
    for split, rows in lines.items():
        (folder / f"win.{split}.inter").write_text(
            "user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float\n" + "".join(rows))
    config = Config(model="LLMMSL", dataset="win", config_dict={
        "llm_path": tiny_llm_dir, "data_path": str(tmp_path / "data"), "benchmark_filename": ["train", "valid", "test"],
        "alias_of_item_id": ["item_id_list"], "load_col": {"inter": ["user_id", "item_id_list", "item_id", "timestamp"]},
        "eval_args": {"order": "TO", "group_by": None, "mode": "full"}, "item_text_field": "title",
        "train_format": "sequence", "MAX_ITEM_LIST_LENGTH": 6, "num_beams": 10, "show_progress": False,
        "checkpoint_dir": str(tmp_path / "saved")})
    train, _, _ = data_preparation(config, create_dataset(config))
    model = LLMMSL(config, train._dataset)
    examples = SequenceExamples(train._dataset, model, seed=2020)
    tokens = train._dataset.field2id_token[train._dataset.iid_field]
    chunks = [([int(tokens[i]) for i in c], c.context) for c in examples.chunks]
    assert examples.rows == len(lines["train"]) == examples.targets == 4
    assert sorted(chunks) == [([1, 2, 3, 4, 5, 6], 3), ([9, 10, 11, 1], 3)]  # before: 4 chunks, 12 targets
