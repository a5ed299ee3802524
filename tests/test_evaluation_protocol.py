"""What evaluation counts (issue 29): an item no beam reached is never a hit, and ``eval_exclude_seen``.

The unreached-item tests use a catalogue of 10 titled items with ``topk`` 10, so RecBole's top-10 of a
user whose search finished fewer than 10 titles must fill up with unscored (-inf) items; the search is
narrowed below ``topk`` by hand (the options refuse it) so that this happens for most users.
"""

import dataclasses
import math

import pytest
import torch

from recbole_msl.errors import ConfigError
from recbole_msl.evaluation.records import ranked_hits
from recbole_msl.model.llmmsl import LLMMSL
from recbole_msl.quick_start import Recommender
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset, data_preparation
from recbole_msl.recbole_seam.registry import get_trainer

TITLES = ["Alpha Road", "Blue Harbor", "Cedar Lake", "Desert Wind", "Echo Valley", "Frozen River",
          "Golden Hill", "Hidden Bay", "Iron Bridge", "Jade Garden"]
N_USERS, PER_USER = 8, 6


def write_catalogue(folder) -> None:
    """``tinycat``: 10 items with distinct titles; 8 users with 6 interactions each, in time order."""
    data = folder / "tinycat"
    data.mkdir()
    items = ["item_id:token\ttitle:token"] + [f"{i + 1}\t{t}" for i, t in enumerate(TITLES)]
    (data / "tinycat.item").write_text("\n".join(items) + "\n")
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(N_USERS):
        for k in range(PER_USER):
            rows.append(f"u{user}\t{(user * 3 + k * 7) % len(TITLES) + 1}\t{1000 + 10 * k + user}")
    (data / "tinycat.inter").write_text("\n".join(rows) + "\n")


@pytest.fixture
def catalogue(tmp_path, tiny_llm_dir):
    """(config, dataset, test loader, model) of LLMMSL on ``tinycat`` with the tiny backbone, untrained."""
    write_catalogue(tmp_path)
    config = Config(model="LLMMSL", dataset="tinycat", config_dict={
        "data_path": str(tmp_path), "llm_path": tiny_llm_dir, "item_text_field": "title",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "topk": [10], "metrics": ["Hit", "NDCG"], "valid_metric": "NDCG@10", "num_beams": 10,
        "show_progress": False, "checkpoint_dir": str(tmp_path / "saved")})
    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = LLMMSL(config, train._dataset).eval()
    return config, dataset, test, model


def test_items_no_beam_reached_are_never_hits(catalogue):
    """With 2 beams and topk 10, RecBole's top-10 holds at least 8 unscored items per user, picked among
    tied -inf scores; a target among them must count as a miss in the metrics and in the per-user hits."""
    config, _, test, model = catalogue
    model.opts = dataclasses.replace(model.opts, num_beams=2)  # fewer finished titles than topk
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result = trainer.evaluate(test, load_best_model=False)

    interaction = next(iter(test))[0]
    assert len(interaction) == N_USERS
    scores = model.full_sort_predict(interaction)
    scores[:, 0] = float("-inf")  # RecBole's padding item, as its trainer does
    targets = interaction[model.POS_ITEM_ID]
    target_scores = scores.gather(1, targets.unsqueeze(1)).squeeze(1)
    reached = target_scores > float("-inf")
    # the case of the issue occurs: a target no beam reached sits in the plain top-10 of the scores
    plain_hit = (scores.topk(10).indices == targets.unsqueeze(1)).any(1)
    assert bool((plain_hit & ~reached).any())

    ranks = 1 + (scores > target_scores.unsqueeze(1)).sum(1)  # titles are distinct: no ties among reached ones
    assert result["hit@10"] == pytest.approx(reached.float().mean().item(), abs=1e-4)
    expected_ndcg = sum(1 / math.log2(r + 1) for r, ok in zip(ranks.tolist(), reached.tolist()) if ok) / N_USERS
    assert result["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-4)
    hits = ranked_hits(test, trainer.last_topk)
    for row, ok, rank in zip(hits["hits"], reached.tolist(), ranks.tolist()):
        assert row == ("0" * (rank - 1) + "1" + "0" * (10 - rank) if ok else "0" * 10)


def test_recommend_returns_only_finished_titles(catalogue):
    """Four history items left out of a 10-item catalogue leave 6 titles: all 6 come back scored, and asking for
    more is a one-line error, never a list padded with items no beam finished."""
    config, dataset, _, model = catalogue
    recommender = Recommender.__new__(Recommender)  # the loaded state of a checkpoint, without one
    recommender.config, recommender.dataset, recommender.model = config, dataset, model
    history = ["1", "2", "3", "4"]
    with pytest.raises(ConfigError, match="only 6 items of data set tinycat are not in the history"):
        recommender.recommend(history, topk=10)
    top = recommender.recommend(history, topk=6)
    assert len(top) == 6
    assert not {item for item, _, _ in top} & set(history)
    assert all(math.isfinite(score) for _, _, score in top)


def test_collector_counts_no_hit_at_an_unscored_rank():
    """The collector seam (full-sort and sampled evaluation alike): a positive at a -inf rank is a miss;
    a matrix without -inf gives RecBole's own rec.topk."""
    from recbole.evaluator import Collector

    from recbole_msl.evaluation.protocol import ReachedOnlyCollector

    config = Config(model="SASRec", dataset="ml-100k", config_dict={"topk": [3], "metrics": ["Hit"],
                                                                     "valid_metric": "Hit@3"})
    inf = float("-inf")
    unscored = torch.tensor([[inf, 0.5, inf], [0.9, inf, 0.3]])  # 3 items, top-3: every item is listed
    finite = torch.tensor([[0.2, 0.5, 0.1], [0.9, 0.1, 0.8]])
    pos_u, pos_i = torch.tensor([0, 1]), torch.tensor([2, 1])  # both targets unscored in ``unscored``
    matrices = {}
    for cls in (Collector, ReachedOnlyCollector):
        for name, scores in (("unscored", unscored), ("finite", finite)):
            collector = cls(config)
            collector.eval_batch_collect(scores.clone(), None, pos_u, pos_i)
            collector.eval_batch_collect(scores.clone(), None, pos_u, pos_i)  # a second batch appends rows
            matrices[cls.__name__, name] = collector.get_data_struct()["rec.topk"]
    assert matrices["ReachedOnlyCollector", "unscored"][:, :3].sum() == 0
    assert matrices["Collector", "unscored"][:, :3].sum() > 0  # RecBole's tie-break picked an unscored target
    assert torch.equal(matrices["ReachedOnlyCollector", "unscored"][:, 3], matrices["Collector", "unscored"][:, 3])
    assert torch.equal(matrices["ReachedOnlyCollector", "finite"], matrices["Collector", "finite"])


# ------------------------------------------------------------------ eval_exclude_seen
def user_items(dataset) -> dict[int, set[int]]:
    """Every user's items, read from the loaded interactions before RecBole's split (a DataFrame then)."""
    frame = dataset.inter_feat
    items: dict[int, set[int]] = {}
    for user, item in zip(frame[dataset.uid_field].tolist(), frame[dataset.iid_field].tolist()):
        items.setdefault(user, set()).add(item)
    return items


def recorded(trainer, data):
    """(result, [(scores, interaction, positive_u, positive_i)] of each batch) of one evaluation of ``data``."""
    batches, collect = [], trainer.eval_collector.eval_batch_collect

    def record(scores, interaction, positive_u, positive_i):
        batches.append((scores.detach().clone().cpu(), interaction, positive_u, positive_i))
        return collect(scores, interaction, positive_u, positive_i)

    trainer.eval_collector.eval_batch_collect = record
    try:
        return trainer.evaluate(data, load_best_model=False), batches
    finally:
        del trainer.eval_collector.eval_batch_collect


def top_rows(batches, uid_field, k=10):
    """(user, target, top-k items, number of scored items, window) of every evaluated row, in order."""
    rows = []
    for scores, interaction, positive_u, positive_i in batches:
        per_user = len(interaction) // scores.size(0)  # sampled evaluation: blocks of candidate rows per user
        users = interaction[uid_field][::per_user].tolist()
        windows = [s[:n] for s, n in zip(interaction["item_id_list"][::per_user].tolist(),
                                         interaction["item_length"][::per_user].tolist())]
        targets = dict(zip(positive_u.tolist(), positive_i.tolist()))
        top = scores.topk(k).indices.tolist()
        scored = (scores > float("-inf")).sum(1).tolist()
        rows += [(u, targets[r], top[r], scored[r], w) for r, (u, w) in enumerate(zip(users, windows))]
    return rows


def check_no_seen_item(rows, items) -> None:
    """No top-k item of a test row (the user's last interaction) is another item the user interacted with."""
    for user, target, top, _, _ in rows:
        assert not (set(top) & (items[user] - {target})), f"user {user} sees history items again"


def seen_beyond_window(rows, items) -> int:
    """Rows whose top-k holds an item seen before the target but older than the row's window."""
    return sum(bool(set(top) & (items[user] - {target} - set(window))) for user, target, top, _, window in rows)


def prepared(model_name, overrides):
    from recbole_msl.recbole_seam.build import build_run

    config = Config(model=model_name, dataset="ml-100k", config_dict={"show_progress": False, **overrides})
    dataset = create_dataset(config)
    items = user_items(dataset)
    built = build_run(config, dataset=dataset)
    return config, items, (built.train_data, built.valid_data, built.test_data), built.model, built.trainer


SASREC = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1, "epochs": 1, "train_batch_size": 1024,
          "MAX_ITEM_LIST_LENGTH": 10}


@pytest.mark.parametrize("mode", ["full", "uni100"])
def test_sasrec_ranks_no_seen_item_with_eval_exclude_seen(mode, tmp_path):
    """SASRec (1 epoch): with eval_exclude_seen no test top-10 holds an item of the user's whole history
    (older than the 10-item window too); without it the evaluation is RecBole's own, bit for bit."""
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    eval_args = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": mode}
    config, items, (train, valid, test), model, trainer = prepared(
        "SASRec", {**SASREC, "eval_exclude_seen": True, "eval_args": eval_args, "checkpoint_dir": str(tmp_path)})
    trainer.fit(train, valid, saved=False)  # validation also ranks without seen items
    _, excluded = recorded(trainer, test)
    rows = top_rows(excluded, config["USER_ID_FIELD"])
    assert len(rows) == 943
    check_no_seen_item(rows, items)

    trainer.exclude_seen = False  # the default protocol, same model
    init_seed(config["seed"], True)  # uni100 draws the negatives anew in each evaluation
    result, default = recorded(trainer, test)
    assert seen_beyond_window(top_rows(default, config["USER_ID_FIELD"]), items) > 0  # the window alone is not enough
    stock = Trainer(config, model)  # RecBole's trainer and collector, untouched
    init_seed(config["seed"], True)
    stock_result, stock_batches = recorded(stock, test)
    assert dict(result) == dict(stock_result)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(default, stock_batches))


def test_llmmsl_spends_its_beams_on_unseen_titles_with_eval_exclude_seen(tiny_run_config):
    """LLMMSL (tiny, untrained): with eval_exclude_seen every user still gets num_beams finished titles, none
    of them seen before the target; without it the scores are RecBole's full-sort scores, bit for bit."""
    from recbole.trainer import Trainer

    config, items, (_, _, test), model, trainer = prepared(
        "LLMMSL", {**tiny_run_config, "eval_exclude_seen": True, "eval_max_users": 5})
    model.eval()
    _, excluded = recorded(trainer, test)
    rows = top_rows(excluded, config["USER_ID_FIELD"])
    assert len(rows) == 5
    check_no_seen_item(rows, items)
    assert all(scored >= config["num_beams"] for _, _, _, scored, _ in rows)  # beams went to unseen titles

    trainer.exclude_seen = False
    result, default = recorded(trainer, test)
    assert len(default) == 1  # one batch of 5 users
    scored = default[0][0] > float("-inf")  # [users, items]: what the plain search finished
    assert any(bool(set(scored[r].nonzero().squeeze(1).tolist()) & (items[user] - {target}))
               for r, (user, target, *_) in enumerate(top_rows(default, config["USER_ID_FIELD"])))
    stock_result, stock_batches = recorded(Trainer(config, model), test)
    assert dict(result) == dict(stock_result)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(default, stock_batches))


def test_a_run_with_eval_exclude_seen_shows_examples_without_history_titles(tiny_run_config):
    """Through ``run``: the examples are ranked as the metrics are, without the titles the user saw."""
    from recbole_msl import run

    result = run("LLMMSL", "ml-100k", config_dict={**tiny_run_config, "eval_exclude_seen": True})
    assert result["examples"] and "ndcg@10" in result["test_result"]
    for example in result["examples"]:
        shown = {top["title"] for top in example["top"]}
        assert len(shown) >= 5 and not shown & (set(example["history"]) - {example["target"]})


def test_eval_exclude_seen_is_part_of_a_comparison_runs_signature():
    from recbole_msl.compare.spec import RunSpec, load_spec

    plain = RunSpec(name="a", model="SASRec", config_files=[], config={"eval_exclude_seen": False})
    seen = RunSpec(name="a", model="SASRec", config_files=[], config={"eval_exclude_seen": True})
    assert plain.signature("ml-100k", 2020, []) != seen.signature("ml-100k", 2020, [])
    spec = load_spec("ml-100k-seen")
    protocols = {(r.model, r.config.get("eval_exclude_seen")) for r in spec.runs}
    assert protocols == {("LLMMSL", False), ("LLMMSL", True), ("SASRec", False), ("SASRec", True)}
