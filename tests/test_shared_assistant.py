"""A comparison's guided runs of one seed train a given assistant once: a later run with the same assistant
settings loads the first one's stored copy, and ranks as if it had trained its own."""

from __future__ import annotations

import json

import yaml

from recbole_msl.cli import main

SMALL_SASREC = {"epochs": 2, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1}
GUIDED = {"name": "guided", "model": "LLMMSL", "config": {"assistant": "SASRec", "assistant_weight": [0, 1.0]}}
TRIE = {"name": "trie", "model": "LLMMSL", "config": {"assistant": "SASRec", "assistant_weight": 1.0, "llm_weight": 0}}


def _compare(tmp_path, name: str, runs: list[dict], shared: dict, capsys) -> tuple[dict, str]:
    spec = {"name": name, "dataset": "ml-100k", "config": shared, "runs": runs}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["compare", f"--comparison={path}", f"--results_dir={tmp_path / name}"]) == 0
    folder = tmp_path / name / name / "runs"
    records = {r["name"]: json.loads((folder / f"{r['name']}--seed2020.json").read_text()) for r in runs}
    return records, capsys.readouterr().out


def test_a_later_run_loads_the_assistant_an_earlier_one_trained(tmp_path, tiny_run_config, capsys):
    """``guided`` trains SASRec; ``trie`` (the same assistant settings) loads it, and its rankings and metrics
    equal those of ``trie`` run alone, training its own."""
    shared = {k: v for k, v in tiny_run_config.items() if k != "checkpoint_dir"}
    shared = {**shared, "MAX_ITEM_LIST_LENGTH": 10, "eval_max_users": 4, "assistant_config": SMALL_SASREC}
    together, printed = _compare(tmp_path, "together", [GUIDED, TRIE], shared, capsys)
    assert "trie seed 2020: loads the assistant guided trained" in printed
    assert together["trie"]["assistant_shared_with"] == "guided" and "assistant_shared_with" not in together["guided"]
    first, taken = together["guided"]["assistant"], together["trie"]["assistant"]
    assert first["source"] == "trained" and taken["source"] == "checkpoint" and taken["trained_in"] == "guided"
    assert taken["test"] == first["test"] and taken["valid"] == first["valid"]

    alone, _ = _compare(tmp_path, "alone", [TRIE], shared, capsys)
    own = alone["trie"]
    assert own["assistant"]["source"] == "trained" and own["assistant"]["test"] == first["test"]
    assert together["trie"]["test_hits"]["hits"] == own["test_hits"]["hits"]  # the same rankings, user for user
    assert together["trie"]["test"] == own["test"] and together["trie"]["valid"] == own["valid"]


def test_only_the_same_assistant_settings_and_seed_share_one(tmp_path, tiny_llm_dir):
    """Another assistant setting, another seed, a failed or untrained source, or a missing stored copy: trained."""
    from recbole_msl.checkpoint import ASSISTANT_WEIGHTS_FILE
    from recbole_msl.compare.shared_assistant import shared_assistant
    from recbole_msl.compare.spec import load_spec

    other = {**TRIE, "name": "other", "config": {**TRIE["config"], "assistant_config": {**SMALL_SASREC, "epochs": 1}}}
    plain = {"name": "plain", "model": "LLMMSL", "config": {}}
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "s", "dataset": "ml-100k", "seeds": [1, 2],
                                         "config": {"llm_path": tiny_llm_dir, "assistant_config": SMALL_SASREC},
                                         "runs": [GUIDED, TRIE, other, plain]}))
    spec = load_spec(str(spec_file))
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / ASSISTANT_WEIGHTS_FILE).write_bytes(b"")
    source = {"run": "guided", "seed": 1, "status": "ok", "saved_model_file": str(folder),
              "assistant": {"source": "trained"}}
    runs = {r.name: r for r in spec.runs}
    assert shared_assistant(spec, runs["trie"], 1, [], [source]) is source
    assert shared_assistant(spec, runs["other"], 1, [], [source]) is None  # another assistant_config
    assert shared_assistant(spec, runs["plain"], 1, [], [source]) is None  # no assistant at all
    assert shared_assistant(spec, runs["trie"], 2, [], [source]) is None  # another seed
    for changed in ({"status": "failed"}, {"assistant": {"source": "checkpoint"}}, {"run": "trie"}):
        assert shared_assistant(spec, runs["trie"], 1, [], [{**source, **changed}]) is None
    (folder / ASSISTANT_WEIGHTS_FILE).unlink()
    assert shared_assistant(spec, runs["trie"], 1, [], [source]) is None
