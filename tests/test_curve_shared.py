"""A curve run that differs from an earlier one only in decoding keys evaluates that run's final adapter instead of
training it again: one training, two decodings, tested as a pair."""

from __future__ import annotations

import json
import shutil

import yaml

from recbole_msl.cli import main
from recbole_msl.compare.curve_stats import training_cpu_seconds


def test_decoding_only_runs_share_the_earlier_runs_adapter(tmp_path, tiny_run_config, capsys, monkeypatch):
    """Really trained on the tiny backbone: ``same`` (a key that changes nothing ranked) and ``short`` (a shorter
    ranking prompt) load ``a``'s adapter instead of training; ``same`` reproduces ``a``'s last point user for user;
    ``short`` is tested against ``a`` in the Holm family; a rerun trains nothing; without ``a``'s adapter folder a
    decoding-only run trains its own."""
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    train_epoch, load_trained, trained, loaded = LLMMSLTrainer._train_epoch, LLMMSLTrainer.load_trained, [], []

    def counted(self, train_data, epoch_idx, *args, **kwargs):
        trained.append((self.config["llm_loss"], self.config["eval_history"], epoch_idx))
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    def spied(self, train_data, source):
        loaded.append(source)
        return load_trained(self, train_data, source)

    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", counted)
    monkeypatch.setattr(LLMMSLTrainer, "load_trained", spied)
    shared = {k: v for k, v in tiny_run_config.items() if k not in ("eval_max_users", "epochs")}
    spec = {"name": "shared", "dataset": "ml-100k", "curve": [0, 8], "reference": "short",
            "config": {**shared, "MAX_ITEM_LIST_LENGTH": 10, "train_samples_per_epoch": 4, "eval_history": 5,
                       "learning_rate": 0.01, "eval_sample_users": {"valid": 3}},
            "runs": [{"name": "a", "model": "LLMMSL", "config": {"llm_loss": "msl"}},
                     {"name": "same", "model": "LLMMSL", "config": {"llm_loss": "msl", "show_examples": 0}},
                     {"name": "short", "model": "LLMMSL", "config": {"llm_loss": "msl", "eval_history": 2}}]}
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = ["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'res'}", "--allow_unknown_keys=True"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert trained == [("msl", 5, 0), ("msl", 5, 1)]  # a only
    adapter = tmp_path / "res" / "shared" / "curves" / "a--seed2020"
    assert loaded == [str(adapter)] * 2
    assert "curve short seed 2020: differs from a only in decoding keys, so it evaluates a's adapter at 8" in printed

    runs = tmp_path / "res" / "shared" / "runs"
    a, same, short = (json.loads((runs / f"curve-{n}--seed2020.json").read_text()) for n in ("a", "same", "short"))
    assert [p["sequences"] for p in short["points"]] == [8]  # one point: the adapter's, decoded its own way
    assert short["training_shared_with"] == "a" and short["shared_at"] == 8 and short["source_signature"] == a["signature"]
    assert short["points"][0]["trained_in"] == "a" and short["points"][0]["tau"] == a["points"][1]["tau"]
    assert short["points"][0]["training_cpu_s"] == training_cpu_seconds(a["points"])[1]
    assert same["points"][0]["valid_hits"] == a["points"][1]["valid_hits"]  # one adapter, one decoding

    report = json.loads((tmp_path / "res" / "shared" / "shared.json").read_text())
    pair = [t for t in report["tests"] if t["kind"] == "decoding vs its training run"]
    assert [(t["run"], t["against"], t["sequences"]) for t in pair] == [("same", "a", 8)] * 2 + [("short", "a", 8)] * 2
    assert all(t["difference"] == 0 for t in pair[:2])  # the same decoding of one adapter
    assert all("p_holm" in t for t in pair) and report["multiple_testing"]["family_size"] == sum(
        1 for t in report["tests"] if "p" in t)
    markdown = (tmp_path / "res" / "shared" / "shared.md").read_text()
    assert "| short vs a at 8 (one adapter) |" in markdown and "| short | 8, a's adapter |" in markdown
    assert not any(t["run"] in ("same", "short") and t["kind"] == "last vs first point" for t in report["tests"])

    assert main(args) == 0  # finished: nothing trained or loaded again
    assert "curve short seed 2020: finished earlier (decodes a's adapter)" in capsys.readouterr().out
    assert len(trained) == 2 and len(loaded) == 2
    assert main(args + ["--report_only"]) == 0
    assert json.loads((tmp_path / "res" / "shared" / "shared.json").read_text())["pending"] == []

    shutil.rmtree(adapter)  # the adapter is gone: a decoding-only run without a record trains its own
    (runs / "curve-short--seed2020.json").unlink()
    assert main(args) == 0
    assert trained[2:] == [("msl", 2, 0), ("msl", 2, 1)] and len(loaded) == 2
    assert "training_shared_with" not in json.loads((runs / "curve-short--seed2020.json").read_text())
