"""Whole runs through RecBole's loaders, trainer, collector and evaluator (tiny backbone)."""

import json
import logging
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from recbole_msl import Recommender, run
from recbole_msl.cli import main
from recbole_msl.errors import ConfigError

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets")
METRICS = {"recall@10", "ndcg@10", "hit@10", "mrr@10", "recall@5", "ndcg@5"}


def _result_of(printed: str) -> dict:
    """The result file named on the summary's last line."""
    path = printed.strip().splitlines()[-1].rsplit(": ", 1)[1]
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trained(tiny_checkpoint):
    return tiny_checkpoint


def test_run_reports_recbole_metrics(trained):
    result, _ = trained
    assert METRICS <= set(result["test_result"]) and METRICS <= set(result["best_valid_result"])
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    assert [r["step"] for r in result["tau_trace"]] == [1, 2, 3, 4]  # 2 epochs x 2 optimizer steps
    assert all(1.5 - 1e-9 <= r["tau"] <= 5.0 + 1e-9 for r in result["tau_trace"])
    assert all({"tau_hat_raw", "tau_hat", "delta", "var", "m"} <= set(r) for r in result["tau_trace"])


def test_result_json_is_written_beside_the_checkpoint(trained):
    result, _ = trained
    assert result["result_file"] == result["saved_model_file"] + ".result.json"
    with open(result["result_file"]) as f:
        written = json.load(f)
    assert written["tau_trace"] == result["tau_trace"] and written["test_result"] == dict(result["test_result"])


def test_checkpoint_is_a_small_peft_adapter(trained):
    result, _ = trained
    folder = result["saved_model_file"]
    assert {"adapter_config.json", "adapter_model.safetensors", "msl_state.json"} <= set(os.listdir(folder))
    weights = load_file(os.path.join(folder, "adapter_model.safetensors"))
    assert weights and all("lora_" in k for k in weights)
    with open(os.path.join(folder, "msl_state.json")) as f:
        state = json.load(f)
    assert state["model"] == "LLMMSL" and "tau" in state["other_parameter"]
    assert not [f for f in os.listdir(os.path.dirname(folder)) if f.startswith(".tmp-")]  # nothing half written


def test_checkpoint_reloads_and_recommends_new_items(trained_recommender):
    rec = trained_recommender
    top = rec.recommend(["1", "50", "172"], topk=5)
    assert len(top) == 5 and all(isinstance(title, str) and title for _, title, _ in top)
    assert not {"1", "50", "172"} & {item for item, _, _ in top}  # the history is excluded by default
    scores = [s for _, _, s in top]
    assert scores == sorted(scores, reverse=True)
    assert top == rec.recommend(["1", "50", "172"], topk=5)  # deterministic
    with pytest.raises(ConfigError, match="is not an item id of data set ml-100k"):
        rec.recommend(["no-such-item"])


def test_recommend_excludes_history_inside_the_search(trained_recommender):
    """With the history's items excluded inside the search, topk new items come back with the same exact
    scores the plain search gives them, and the best is at least as good as the plain search's best new one."""
    rec = trained_recommender
    plain = rec.recommend(["1", "50", "172"], topk=10, exclude_history=False)
    history = [item for item, _, _ in plain[:4]]  # the four best are now in the history
    new = rec.recommend(history, topk=10)
    assert not set(history) & {item for item, _, _ in new} and len(new) == 10
    kept = {item: score for item, _, score in rec.recommend(history, topk=10, exclude_history=False)
            if item not in history}
    assert all(score == pytest.approx(kept[item], abs=1e-4) for item, _, score in new if item in kept)
    assert new[0][2] >= max(kept.values()) - 1e-4


def test_cli_recommend_prints_ranked_titles(trained, capsys):
    result, _ = trained
    assert main(["recommend", f"--checkpoint={result['saved_model_file']}", "--history=1,50,172", "--topk=3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "1"


def test_damaged_checkpoint_is_refused(trained, tmp_path):
    result, _ = trained
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(result["saved_model_file"], broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ConfigError, match="damaged"):
        Recommender(str(broken))


@pytest.mark.parametrize("flags", [["--llm_loss=lml"], ["--tau=4.5"], ["--tau=ats", "--cbs_renormalize=True"]])
def test_cli_variants_run(tiny_run_config, flags, capsys):
    args = ["--model=LLMMSL", "--dataset=ml-100k"] + [f"--{k}={v}" for k, v in tiny_run_config.items()] + flags
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = _result_of(printed)
    assert "ndcg@10" in result["test_result"]
    assert "tau_trace" not in printed  # the trace goes to the result file, not the console
    trace = result.get("tau_trace", [])
    assert bool(trace) == ("--llm_loss=lml" not in flags)  # tau is an MSL notion
    if "--tau=4.5" in flags:
        assert trace == [{"step": s, "tau": 4.5} for s in range(1, len(trace) + 1)]


ML100K_ITEMS = 1683  # RecBole's ids of ml-100k's 1682 items, plus the padding id 0


@pytest.mark.parametrize("model, sizes, parameters", [
    # 16-wide item embeddings, 10 positions, one block: attention 4 x (16x16 + 16), feed-forward 16x32 + 32 and
    # 32x16 + 16, two LayerNorms in the block and one after the embeddings (2 x 16 each)
    ("SASRec", ["--hidden_size=16", "--inner_size=32", "--n_layers=1", "--n_heads=1"],
     ML100K_ITEMS * 16 + 10 * 16 + 4 * (16 * 16 + 16) + (16 * 32 + 32) + (32 * 16 + 16) + 3 * 2 * 16),
    # 16-wide item embeddings, one GRU layer without biases (3 gates x (16x16 + 16x16)), a 16x16 + 16 projection
    ("GRU4Rec", ["--embedding_size=16", "--hidden_size=16"],
     ML100K_ITEMS * 16 + 3 * (16 * 16 + 16 * 16) + (16 * 16 + 16)),
])
def test_recbole_models_run_through_the_same_entry_point(model, sizes, parameters, tmp_path, capsys):
    """The command line trains a RecBole model with its size flags on ml-100k's catalogue, and tests it on a row
    for every one of ml-100k's 943 users, better than chance."""
    args = [f"--model={model}", "--dataset=ml-100k", "--epochs=1", "--MAX_ITEM_LIST_LENGTH=10",
            "--train_batch_size=1024", f"--checkpoint_dir={tmp_path}", "--show_progress=False", *sizes]
    assert main(args) == 0
    result = _result_of(capsys.readouterr().out)
    assert result["model"] == model and result["dataset"] == "ml-100k"
    assert result["trainable_parameters"] == parameters  # the size flags and the 1682 items reached the model
    assert result["test_rows"] == 943  # leave-one-out: one test row per ml-100k user
    # ranking at random hits 10 of 1682 items (0.006); one epoch of training gives about 0.04
    assert result["test_result"]["hit@10"] > 0.02
    assert any(f.endswith(".pth") for f in os.listdir(tmp_path))  # best-model reload worked on torch >= 2.6


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "amazon-books")),
                    reason="needs ../shared/datasets/amazon-books beside the checkout")
def test_amazon_books_benchmark_split_evaluates_the_files_test_rows(tiny_run_config):
    """The benchmark files' split is used as it is: the test rows are the test file's rows of the first users."""
    result = run("LLMMSL", "amazon-books", config_dict={**tiny_run_config, "data_path": SHARED},
                 keep_test_hits=True)
    assert METRICS <= set(result["test_result"])
    with open(os.path.join(SHARED, "amazon-books", "amazon-books.test.inter"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]  # user, history, target, timestamp
    first_users = list(dict.fromkeys(r[0] for r in rows))[:tiny_run_config["eval_max_users"]]
    expected = sorted((r[0], r[2]) for r in rows if r[0] in first_users)
    hits = result["test_hits"]
    assert sorted(zip(hits["users"], hits["targets"])) == expected
    assert len(expected) > len(first_users)  # users with several sliding windows give several rows


@pytest.mark.parametrize("args, message", [
    (["--model=NoSuchModel", "--dataset=ml-100k"], "unknown model"),
    (["--model=LLMMSL", "--dataset=ml-100k", "--config_files=/nope.yaml"], "does not exist"),
    (["--model=LLMMSL", "--dataset=no-such-set", "--data_path={tmp}", "--download_url=http://127.0.0.1:9/x.zip"],
     "could not be downloaded"),
    (["--model=LLMMSL", "--dataset=ml-100k", "--config_files={tmp}/bad.yaml"], "not valid YAML"),
    (["--model=LLMMSL", "--dataset=ml-100k", "stray-argument"], "--key=value"),
])
def test_cli_errors_are_one_line(args, message, capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text("epochs: [1, 2\nfoo: : bar\n")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_sampled_evaluation_equals_ranks_recomputed_from_predict(tiny_run_config, monkeypatch):
    """uni100: RecBole ranks 1 positive + 100 sampled items (drawn with repeats, counted once) per user by
    ``predict``'s exact scores; each user's hit position in RecBole's rec.topk equals the positive's rank
    among the recorded scores."""
    from recbole_msl.model.llmmsl import LLMMSL
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    calls, predict, evaluate = [], LLMMSL.predict, LLMMSLTrainer.evaluate

    def recording_predict(self, interaction):
        scores = predict(self, interaction)
        calls.append((interaction[self.USER_ID].tolist(), interaction[self.ITEM_ID].tolist(), scores.tolist()))
        return scores

    def fresh_evaluate(self, *args, **kwargs):  # keep the calls of the latest evaluation (the test pass)
        calls.clear()
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(LLMMSL, "predict", recording_predict)
    monkeypatch.setattr(LLMMSLTrainer, "evaluate", fresh_evaluate)
    cfg = {**tiny_run_config, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                                            "mode": "uni100"}, "eval_max_users": 6, "topk": [10, 50],
           "num_beams": 50, "metrics": ["Hit", "MRR"], "valid_metric": "MRR@50"}
    result = run("LLMMSL", "ml-100k", config_dict=cfg, keep_test_hits=True)
    users, items, scores = ([v for call in calls for v in call[k]] for k in range(3))  # RecBole splits its batches
    ranks = []
    for start in range(0, len(users), 101):  # rows come in user blocks of 101, the positive first
        assert len(set(users[start:start + 101])) == 1 and len(scores[start:start + 101]) == 101
        negatives = dict(zip(items[start + 1:start + 101], scores[start + 1:start + 101]))  # sampled with repeats
        ranks.append(1 + sum(s > scores[start] for s in negatives.values()))
    hits = result["test_hits"]["hits"]
    assert len(ranks) == len(hits) == 6
    assert [h.find("1") + 1 if "1" in h else None for h in hits] == [r if r <= 50 else None for r in ranks]
    assert any(r <= 50 for r in ranks)  # not a trivial all-miss comparison
    assert result["test_result"]["mrr@50"] == pytest.approx(sum(1 / r for r in ranks if r <= 50) / 6, abs=1e-4)


def test_adapter_loads_with_peft_outside_recbole(trained, tiny_llm_dir):
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    result, _ = trained
    folder = result["saved_model_file"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm_dir), folder)
    saved = load_file(os.path.join(folder, "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model)
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert any(bool(v.abs().sum()) for k, v in saved.items() if "lora_B" in k)  # trained, not the zero init


def test_looking_up_a_recbole_model_leaves_autograd_anomaly_mode_as_it_was():
    """RecBole's SINE module switches anomaly detection on when its package is imported (3.7x slower GRU steps)."""
    import subprocess
    import sys

    from recbole_msl.recbole_seam.registry import get_model

    code = ("import sys, torch; from recbole_msl.recbole_seam.registry import get_model; get_model('SASRec'); "
            "print('recbole.model.sequential_recommender.sine' in sys.modules, torch.is_anomaly_enabled())")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert fresh.stdout.split()[-2:] == ["True", "False"]  # SINE was imported, and its switch undone
    torch.autograd.set_detect_anomaly(True)
    try:
        get_model("GRU4Rec")
        assert torch.is_anomaly_enabled()  # a user's own setting is kept
    finally:
        torch.autograd.set_detect_anomaly(False)


def test_last_epoch_is_validated_when_eval_step_does_not_divide_epochs(tiny_run_config, caplog):
    """An eval_step that does not divide --epochs validates every eval_step epochs and the last one too, and
    tests the adapter it chose. (RecBole lowers eval_step to epochs, so it takes epochs > eval_step to show.)"""
    config = {**tiny_run_config, "epochs": 4, "eval_step": 3, "train_samples_per_epoch": 8, "eval_max_users": 3}
    with caplog.at_level(logging.INFO):
        result = run("LLMMSL", "ml-100k", config_dict=config)
    validated = [int(m.group(1)) for r in caplog.records
                 for m in [re.search(r"epoch (\d+) evaluating", r.getMessage())] if m]
    assert validated == [2, 3]  # epoch 2 by eval_step, epoch 3 (the last, 3 does not divide 4) as the last one
    assert [r["step"] for r in result["tau_trace"]] == [1, 2, 3, 4]  # 4 epochs x 1 optimizer step were trained
    assert METRICS <= set(result["best_valid_result"])
    assert os.path.isfile(os.path.join(result["saved_model_file"], "adapter_model.safetensors"))
