"""Assistant-guided beam search: subtree masses, the fused score against brute force, and the assistant's sources."""

import json
import logging
import os
import random

import pytest
import torch
from test_decoding import TITLES, build, exact_score, left_pad

from recbole_msl.core.beam_search import NoLM, constrained_beam_search
from recbole_msl.core.subtree_mass import SubtreeRanges
from recbole_msl.core.trie import TokenTrie
from recbole_msl.errors import ConfigError, DataMismatchError
from recbole_msl.lm.cached_lm import CachedCausalLM


def random_trie(seed=0, titles=300):
    rng = random.Random(seed)
    seqs = [[rng.randint(0, 6) for _ in range(rng.randint(1, 5))] + [99] for _ in range(titles)]
    items = [[i + 1] for i in range(titles)]
    seqs.append(list(seqs[3]))  # two items share a title
    items.append([titles + 1])
    return TokenTrie.build(seqs, items, titles + 3), seqs, items  # the last item has no title


def node_path(trie, seq):
    path, node = [0], torch.tensor([0])
    for token in seq:
        node = trie.child(node, torch.tensor([token]))
        path.append(int(node))
    return path


def item_log_probs(users, n_items, seed=0):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(users, n_items, generator=generator, dtype=torch.float64) * 2
    scores[:, 0] = float("-inf")
    return scores.log_softmax(-1)


def test_subtree_masses_equal_a_brute_force_sum():
    trie, seqs, items = random_trie()
    log_p = item_log_probs(3, trie.item_leaf.numel())
    masses = SubtreeRanges.of(trie).masses(log_p)
    brute = torch.zeros(3, trie.num_nodes, dtype=torch.float64)
    for seq, owners in zip(seqs, items):
        for node in node_path(trie, seq):
            for item in owners:
                brute[:, node] += log_p[:, item].exp()
    nodes = torch.arange(trie.num_nodes).unsqueeze(1)
    for user in range(3):
        got = masses.log_share(torch.full((trie.num_nodes,), user), nodes).squeeze(1)
        torch.testing.assert_close(got, (brute[user] / brute[user, 0]).log(), rtol=0, atol=1e-9)


def test_best_title_share_under_each_node_equals_a_brute_force_maximum(monkeypatch):
    """The stopping bound: the largest single title's share below a node (range maxima over depth-first leaves);
    without the table (a catalogue too large for it) the node's own share, which is never smaller."""
    from recbole_msl.core import subtree_mass

    trie, seqs, items = random_trie(seed=2)
    log_p = item_log_probs(2, trie.item_leaf.numel(), seed=5)
    masses = SubtreeRanges.of(trie).masses(log_p)
    title_mass = {}
    for seq, owners in zip(seqs, items):
        title_mass[tuple(seq)] = title_mass.get(tuple(seq), 0.0) + sum(float(log_p[:, i].exp()[0]) for i in owners)
    best = torch.full((trie.num_nodes,), 0.0, dtype=torch.float64)
    for seq, mass in title_mass.items():
        for node in node_path(trie, list(seq)):
            best[node] = max(best[node], mass)
    total = sum(title_mass.values())
    nodes = torch.arange(trie.num_nodes).unsqueeze(1)
    got = masses.log_best_share(torch.zeros(trie.num_nodes, dtype=torch.long), nodes).squeeze(1)
    torch.testing.assert_close(got, (best / total).log(), rtol=0, atol=1e-9)
    monkeypatch.setattr(subtree_mass, "RANGE_MAX_ENTRIES", 0)
    loose = SubtreeRanges.of(trie).masses(log_p)
    assert loose.range_max is None
    looser = loose.log_best_share(torch.zeros(trie.num_nodes, dtype=torch.long), nodes).squeeze(1)
    assert bool((looser >= got - 1e-9).all()) and bool((looser > got + 1e-6).any())


def test_leaf_ranks_are_depth_first_so_every_subtree_is_one_range():
    trie, seqs, _ = random_trie(seed=1)
    ranges = SubtreeRanges.of(trie)
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])  # lexicographic = depth first
    ranks = [int(ranges.item_rank[i + 1]) for i in order]
    assert ranks == sorted(ranks) and ranks[0] == 0 and ranks[-1] == ranges.num_leaves - 1
    assert int(ranges.item_rank[-1]) == -1  # the item without a title


def fused_brute_force(model, tokenizer, prompt, seqs, log_p_items, weight, llm_weight, length_penalty):
    """Every title's score: llm_weight * LLM title score + weight * log p_a(title's items | titled items)."""
    probs = log_p_items.exp()
    total = probs[1:len(TITLES) + 1].sum()
    by_title = {}
    for index, seq in enumerate(seqs):
        by_title.setdefault(tuple(seq), []).append(index + 1)
    out = {}
    for seq, owners in by_title.items():
        llm = exact_score(model, prompt, list(seq), seqs, False, length_penalty) if llm_weight else 0.0
        assistant = float((probs[owners].sum() / total).log())
        for item in owners:
            out[item] = llm_weight * llm + weight * assistant
    return out


@pytest.mark.parametrize("weight, llm_weight, length_penalty", [(0.7, 1.0, 1.0), (2.0, 1.0, 0.0), (1.0, 0.0, 1.0)])
def test_fused_beam_scores_equal_brute_force_on_a_small_catalogue(tiny_llm, weight, llm_weight, length_penalty):
    model, tokenizer = tiny_llm
    trie, seqs = build(tokenizer)
    prompts = [tokenizer("Recommend a film after Heat and Alien:")["input_ids"], tokenizer("Films:")["input_ids"]]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id or 0)
    log_p = item_log_probs(2, len(TITLES) + 1, seed=3)
    guide = SubtreeRanges.of(trie).masses(log_p)
    lm = CachedCausalLM(model) if llm_weight else NoLM(trie.vocab_span)
    scores, leaves = constrained_beam_search(lm, ids, mask, trie, len(TITLES), length_penalty=length_penalty,
                                             guide=guide, assistant_weight=weight, llm_weight=llm_weight)
    for user, prompt in enumerate(prompts):
        expected = fused_brute_force(model, tokenizer, prompt, seqs, log_p[user], weight, llm_weight, length_penalty)
        got = {}
        for score, leaf in zip(scores[user].tolist(), leaves[user].tolist()):
            if leaf < 0:  # 12 distinct titles, 13 beams
                continue
            for item in trie.items_of_leaves(torch.tensor([leaf]))[0].tolist():
                got[item] = score
        assert set(got) == set(expected), "every title is found"
        for item, value in expected.items():
            assert got[item] == pytest.approx(value, abs=3e-4), item


def test_fewer_beams_keep_the_fused_order_of_what_they_find(tiny_llm):
    """With 3 beams the search returns fused scores exactly for the titles it finishes, best first."""
    model, tokenizer = tiny_llm
    trie, seqs = build(tokenizer)
    prompt = tokenizer("Films:")["input_ids"]
    ids, mask = left_pad([prompt], 0)
    log_p = item_log_probs(1, len(TITLES) + 1, seed=4)
    guide = SubtreeRanges.of(trie).masses(log_p)
    scores, leaves = constrained_beam_search(CachedCausalLM(model), ids, mask, trie, 3, guide=guide,
                                             assistant_weight=1.5)
    expected = fused_brute_force(model, tokenizer, prompt, seqs, log_p[0], 1.5, 1.0, 1.0)
    found = [trie.items_of_leaves(torch.tensor([leaf]))[0].tolist()[0] for leaf in leaves[0].tolist() if leaf >= 0]
    assert len(found) == 3
    for item, score in zip(found, scores[0].tolist()):
        assert score == pytest.approx(expected[item], abs=3e-4)
    assert scores[0].tolist() == sorted(scores[0].tolist(), reverse=True)


def test_weight_zero_equals_the_search_without_a_guide_exactly(tiny_llm):
    model, tokenizer = tiny_llm
    trie, _ = build(tokenizer)
    ids, mask = left_pad([tokenizer("Films:")["input_ids"], tokenizer("Heat, then:")["input_ids"]], 0)
    guide = SubtreeRanges.of(trie).masses(item_log_probs(2, len(TITLES) + 1))
    plain = constrained_beam_search(CachedCausalLM(model), ids, mask, trie, 5)
    zero = constrained_beam_search(CachedCausalLM(model), ids, mask, trie, 5, guide=guide, assistant_weight=0.0)
    guided = constrained_beam_search(CachedCausalLM(model), ids, mask, trie, 5, guide=guide, assistant_weight=3.0)
    assert torch.equal(plain[0], zero[0]) and torch.equal(plain[1], zero[1])
    assert not torch.equal(plain[0], guided[0])  # the comparison can fail: a weight changes the scores


# ----------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def guided_model(tiny_llm_dir, tmp_path_factory):
    from recbole_msl.model.llmmsl import LLMMSL
    from recbole_msl.recbole_seam.assistant import assistant_config
    from recbole_msl.recbole_seam.config import Config
    from recbole_msl.recbole_seam.data import create_dataset, data_preparation
    from recbole_msl.recbole_seam.registry import get_model

    overrides = {"llm_path": tiny_llm_dir, "num_beams": 10, "eval_max_users": 4, "show_progress": False,
                 "checkpoint_dir": str(tmp_path_factory.mktemp("saved")), "assistant": "SASRec",
                 "assistant_weight": [0.0, 1.0]}
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict=overrides)
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = LLMMSL(config, train._dataset).eval()
    assistant = get_model("SASRec")(assistant_config(config, "SASRec"), train._dataset).eval()  # random weights
    model.attach_assistant(assistant, {"model": "SASRec", "source": "test"})
    return model, valid, config, dataset


def test_model_predict_equals_the_fused_beam_score_of_every_finished_title(guided_model):
    model, valid, _, _ = guided_model
    batch = next(iter(valid))[0][:2]
    for weight in (1.0, 0.0):
        model.assistant_weight = weight
        with torch.no_grad():
            scores = model.full_sort_predict(batch)
            for row in range(2):
                found = torch.isfinite(scores[row]).nonzero().squeeze(1)
                pairs = batch[row:row + 1].repeat_interleave(len(found))
                pairs.update(type(batch)({model.ITEM_ID: found}))
                torch.testing.assert_close(model.predict(pairs), scores[row, found], rtol=1e-4, atol=1e-4)
    model.assistant_weight = 0.0


def test_model_weight_zero_ranks_exactly_as_without_an_assistant(guided_model):
    model, valid, _, _ = guided_model
    batch = next(iter(valid))[0][:3]
    with torch.no_grad():
        model.assistant_weight = 0.0
        with_assistant = model.full_sort_predict(batch)
        kept, model.assistant = model.assistant, None
        try:
            without = model.full_sort_predict(batch)
        finally:
            model.assistant = kept
    assert torch.equal(with_assistant, without)


def test_assistant_checkpoint_of_other_items_is_refused(guided_model, tmp_path):
    from recbole_msl.recbole_seam.assistant import load_assistant

    model, _, config, dataset = guided_model
    state = {"config": {"model": "SASRec", "dataset": "ml-100k"}, "items": {"items": 5, "sha256": "0" * 64},
             "state_dict": model.assistant.state_dict()}
    path = tmp_path / "other.pth"
    torch.save(state, path)
    config["assistant"], config["assistant_checkpoint"] = None, str(path)
    try:
        with pytest.raises(DataMismatchError, match="other items"):
            load_assistant(config, dataset)
        torch.save({**state, "config": {"model": "SASRec", "dataset": "ml-1m"}}, path)
        with pytest.raises(DataMismatchError, match="data set ml-1m"):
            load_assistant(config, dataset)
        from recbole_msl.checkpoint import item_identity

        torch.save({**state, "items": item_identity(dataset)}, path)  # the right items load, with equal scores
        loaded, _ = load_assistant(config, dataset)
        for name, tensor in model.assistant.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor)
    finally:
        config["assistant"], config["assistant_checkpoint"] = "SASRec", None


@pytest.mark.parametrize("override, message", [
    ({"assistant": "SASRecc", "assistant_weight": 1}, "unknown model 'SASRecc'"),
    ({"assistant": "BPR", "assistant_weight": 1}, "not a sequential model"),
    ({"assistant": "LLMMSL", "assistant_weight": 1}, "the LLM itself"),
    ({"assistant": "SASRec", "assistant_weight": -1}, "assistant_weight must be >= 0.0"),
    ({"assistant": "SASRec", "assistant_temperature": 0}, "assistant_temperature must be >= 1e-06"),
    ({"assistant": "SASRec", "llm_weight": -0.5}, "llm_weight must be >= 0.0"),
    ({"assistant_weight": 1.0}, "assistant_weight needs an assistant"),
    ({"assistant": "SASRec", "assistant_checkpoint": "x.pth", "assistant_weight": 1}, "not both"),
    ({"assistant": "SASRec", "llm_weight": 0, "assistant_weight": [0, 1]}, "ranks nothing"),
    ({"assistant": "SASRec"}, "assistant_weight is 0, so the assistant would not change the ranking"),
])
def test_bad_assistant_settings_give_one_line_errors(tiny_llm_dir, override, message):
    from recbole_msl.quick_start import check_run_config
    from recbole_msl.recbole_seam.config import Config

    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={"llm_path": tiny_llm_dir, **override})
    with pytest.raises(ConfigError, match=message) as err:
        check_run_config(config)
    assert "\n" not in str(err.value)


def test_training_an_assistant_under_torchrun_is_refused_with_the_fix(tiny_llm_dir, monkeypatch):
    from recbole_msl.quick_start import check_run_config
    from recbole_msl.recbole_seam.config import Config

    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={"llm_path": tiny_llm_dir, "assistant": "SASRec",
                                                                    "assistant_weight": 1})
    monkeypatch.setenv("WORLD_SIZE", "2")  # after the Config: it would join a process group otherwise
    with pytest.raises(ConfigError, match="inside a torchrun run is not supported.*assistant_checkpoint") as err:
        check_run_config(config)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_run_config(config)  # one process: accepted


# ----------------------------------------------------------------------------- whole runs
SMALL_SASREC = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1}  # 9x faster to train than the default
@pytest.fixture(scope="module")
def guided_run(tiny_llm_dir, tmp_path_factory):
    from recbole_msl import run

    overrides = {"llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 16, "train_batch_size": 8,
                 "micro_batch_size": 4, "eval_max_users": 6, "num_beams": 10, "decode_batch_size": 3,
                 "show_progress": False, "checkpoint_dir": str(tmp_path_factory.mktemp("saved")),
                 "assistant": "SASRec", "assistant_config": {"epochs": 2, **SMALL_SASREC},
                 "assistant_weight": [0, 1.0, 4.0]}
    return run("LLMMSL", "ml-100k", config_dict=overrides), overrides


def test_weight_grid_is_chosen_on_validation_and_stored_with_the_adapter(guided_run):
    result, _ = guided_run
    grid = result["assistant"]["grid"]
    assert [g["assistant_weight"] for g in grid] == [0, 1.0, 4.0]
    best = max(grid, key=lambda g: g["score"])  # the first best, as RecBole's early stopping keeps
    assert result["assistant"]["weight"] == best["assistant_weight"]
    assert result["best_valid_result"] == best["valid"]
    folder = result["saved_model_file"]
    with open(os.path.join(folder, "msl_state.json"), encoding="utf-8") as f:
        state = json.load(f)
    assert state["assistant"]["weight"] == best["assistant_weight"] and state["assistant"]["model"] == "SASRec"
    assert os.path.isfile(os.path.join(folder, "assistant.safetensors"))
    assert result["assistant"]["test"] and result["assistant"]["valid"]  # the assistant's own metrics


def test_recommender_ranks_with_the_stored_assistant_as_the_run_did(guided_run):
    from recbole_msl import Recommender

    result, _ = guided_run
    rec = Recommender(result["saved_model_file"])
    assert rec.model.assistant is not None and rec.model.assistant_weight == result["assistant"]["weight"]
    history = [[1, 2, 3, 4]]
    with torch.no_grad():
        loaded = rec.model.rank(history)
        rec.model.assistant_weight = 0.0 if result["assistant"]["weight"] else 1.0
        other = rec.model.rank(history)
    assert not torch.equal(loaded, other)  # the stored weight is the one ranking uses


def test_recommend_ranks_with_an_assistant_weight_given_for_it(guided_run, caplog):
    """--assistant_weight at recommend time replaces the weight chosen on validation (with a warning), as
    --assistant_temperature does; a grid is refused, and so is a weight for a checkpoint without an assistant."""
    from recbole_msl import Recommender

    result, _ = guided_run
    folder, chosen = result["saved_model_file"], result["assistant"]["weight"]
    with caplog.at_level(logging.WARNING):
        rec = Recommender(folder, {"assistant_weight": 2.5})
    assert rec.model.assistant_weight == 2.5 and f"not the {chosen:g} chosen on validation" in caplog.text
    with pytest.raises(ConfigError, match="is a grid, which only training searches"):
        Recommender(folder, {"assistant_weight": [1.0, 2.0]})
    assert Recommender(folder).model.assistant_weight == chosen


def test_trained_checkpoint_evaluates_the_same_adapter_without_training(guided_run, tmp_path):
    from recbole_msl import run

    result, overrides = guided_run
    again = run("LLMMSL", "ml-100k", config_dict={**overrides, "checkpoint_dir": str(tmp_path),
                                                   "trained_checkpoint": result["saved_model_file"]})
    assert again["test_result"] == result["test_result"]
    assert again["assistant"]["grid"] == result["assistant"]["grid"]
    assert again["trained_checkpoint"] == os.path.abspath(result["saved_model_file"])


def test_assistant_alone_through_the_trie_trains_nothing(tiny_llm_dir, tmp_path):
    from recbole_msl import run

    overrides = {"llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 16, "train_batch_size": 8,
                 "micro_batch_size": 4, "eval_max_users": 6, "num_beams": 10, "decode_batch_size": 3,
                 "show_progress": False, "checkpoint_dir": str(tmp_path), "assistant": "SASRec",
                 "assistant_config": {"epochs": 2, **SMALL_SASREC}, "assistant_weight": 1.0, "llm_weight": 0}
    result = run("LLMMSL", "ml-100k", config_dict=overrides)
    assert result["tau_trace"] == []  # no optimizer step
    assert result["assistant"]["grid"][0]["assistant_weight"] == 1.0


def test_the_assistant_is_what_a_sasrec_run_with_its_settings_trains(guided_run, tmp_path):
    """Trained inside the LLM run on the same split, the assistant equals a standalone SASRec run given the same
    data, evaluation and assistant_config settings: so a comparison's SASRec row is the model the hybrid used."""
    from recbole_msl import run

    result, overrides = guided_run
    alone = run("SASRec", "ml-100k", config_dict={"epochs": 2, **SMALL_SASREC, "MAX_ITEM_LIST_LENGTH": 10,
                                                  "eval_max_users": overrides["eval_max_users"],
                                                  "show_progress": False, "checkpoint_dir": str(tmp_path)})
    assert alone["test_result"] == result["assistant"]["test"]
    assert alone["best_valid_result"] == result["assistant"]["valid"]


def test_the_end_of_run_summary_names_the_assistant_and_the_weight_kept(guided_run):
    from recbole_msl.summary import run_summary

    result, _ = guided_run
    text = run_summary(result)
    weight = result["assistant"]["weight"]
    assert "ranked with the assistant SASRec (trained on the same split in" in text
    assert f"assistant_weight {weight:g} kept on validation ndcg@10 (0: " in text
    assert "the assistant alone (RecBole's full ranking): valid ndcg@10" in text


def test_a_weight_kept_at_the_grid_edge_is_flagged():
    """The kept weight is the largest tried: the summary says a larger one may do better; inside the grid, or a
    single weight, it says nothing."""
    from recbole_msl.summary import assistant_lines, at_grid_edge

    grid = [{"assistant_weight": w, "score": s} for w, s in [(0.5, 0.04), (1, 0.05), (8, 0.07)]]
    assert at_grid_edge([0.5, 1, 8], 8) and not at_grid_edge([0.5, 1, 8], 1)
    assert not at_grid_edge([8], 8)  # one weight: nothing was chosen
    assert not at_grid_edge([0, 0], 0)
    record = {"model": "SASRec", "source": "checkpoint", "weight": 8, "grid": grid}
    assert any("8 is the grid's largest weight" in line for line in assistant_lines(record, "ndcg@10"))
    assert not any("largest" in line for line in assistant_lines({**record, "weight": 1}, "ndcg@10"))
