"""Inputs that used to give a wrong answer with exit code 0 now stop with one line that names the fix.

Three classes (issue 28): a checkpoint used with data other than it was trained on (or a resume
folder read from another directory), options no configuration layer knows (typos), and a damaged
adapter (edited bytes, non-finite weights, a ranking that finds no title).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_bad_input import LOAD_COL, write_atomic

from recbole_msl import Recommender, run
from recbole_msl.cli import main
from recbole_msl.errors import (
    ConfigError,
    DamagedCheckpointError,
    DataMismatchError,
    EmptyRankingError,
    UnknownOptionError,
)
from recbole_msl.recbole_seam.config import Config


def _error_line(capsys) -> str:
    """The single ``error:`` line the CLI printed last (no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines and [line for line in lines if line.startswith("error")] == [lines[-1]]
    return lines[-1]


def _run_config(llm):
    return {"llm_path": llm, "item_text_field": "title", "epochs": 1, "train_samples_per_epoch": 8,
            "train_batch_size": 8, "micro_batch_size": 4, "eval_max_users": 3, "num_beams": 10,
            "decode_batch_size": 3, "topk": [5, 10], "show_progress": False, "show_examples": 0,
            "log_wandb": False, "checkpoint_dir": "saved",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}}


@pytest.fixture(scope="module")
def trained_here(tiny_llm_dir, tmp_path_factory):
    """One LLMMSL run on data set ``set`` trained in folder ``here`` with relative ``dataset/`` and ``saved/``;
    folder ``there`` holds a *different* ``dataset/set`` (other titles). Returns (here, there, result, cfg)."""
    root = tmp_path_factory.mktemp("silently-wrong")
    here, there = root / "here", root / "there"
    write_atomic(str(here / "dataset"), "set")
    write_atomic(str(there / "dataset"), "set", items=[(i, f"Other film {i}") for i in range(1, 21)])
    cfg = _run_config(tiny_llm_dir)
    cwd = os.getcwd()
    os.chdir(here)
    try:
        result = run("LLMMSL", "set", config_dict=cfg)
    finally:
        os.chdir(cwd)
    return here, there, result, cfg


# ------------------------------------------------------------------ 1. a checkpoint used with other data
def test_recommend_from_another_folder_uses_the_data_it_was_trained_on(trained_here, monkeypatch, capsys):
    _, there, result, _ = trained_here
    monkeypatch.chdir(there)  # holds a different dataset/set
    assert main(["recommend", f"--checkpoint={result['saved_model_file']}", "--history=2,3,4", "--topk=3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("Movie number" in line for line in lines), lines


def test_checkpoint_with_other_data_is_refused(trained_here, monkeypatch, capsys):
    here, there, result, _ = trained_here
    monkeypatch.chdir(there)
    args = ["recommend", f"--checkpoint={result['saved_model_file']}", "--history=2,3,4", "--topk=3",
            f"--data_path={there / 'dataset'}"]
    assert main(args) == 2
    line = _error_line(capsys)
    assert "was trained on data set set at " + str(here / "dataset" / "set") in line, line
    assert str(there / "dataset" / "set") in line and "sha256 " in line and "--data_path" in line, line
    with pytest.raises(DataMismatchError):
        Recommender(result["saved_model_file"], {"data_path": str(there / "dataset")})


def test_checkpoint_without_data_fingerprint_loads_with_a_warning(trained_here, tmp_path, monkeypatch, caplog):
    """Decision: checkpoints saved before the data fingerprint load as before (data_path as stored, relative to the
    working directory), with a warning that the data cannot be checked."""
    here, _, result, _ = trained_here
    old = tmp_path / "old-checkpoint"
    shutil.copytree(result["saved_model_file"], old)
    state = json.loads((old / "msl_state.json").read_text())
    state.pop("data")
    state["overrides"].pop("data_path", None)
    (old / "msl_state.json").write_text(json.dumps(state))
    (old / "manifest.json").unlink()  # old folders had none
    monkeypatch.chdir(here)
    with caplog.at_level(logging.WARNING):
        top = Recommender(str(old)).recommend(["2", "3", "4"], topk=3)
    assert len(top) == 3 and all(title.startswith("Movie number") for _, title, _ in top)
    assert any("no fingerprint of the data" in r.getMessage() for r in caplog.records)


def test_finished_run_resumes_from_another_folder(trained_here, monkeypatch):
    """The -last folder names its best-model folder relative to itself, not to the training directory."""
    here, there, result, cfg = trained_here
    last = result["saved_model_file"] + "-last"
    with open(os.path.join(last, "trainer_state.json")) as f:
        assert not os.path.isabs(json.load(f)["best_model"])
    monkeypatch.chdir(there)
    again = run("LLMMSL", "set", config_dict={**cfg, "data_path": str(here / "dataset"), "resume": last})
    assert again["saved_model_file"] == result["saved_model_file"]
    # the same resume with this folder's (different) dataset/set is refused before training
    with pytest.raises(DataMismatchError, match="cannot resume from .*was trained on data set set at"):
        run("LLMMSL", "set", config_dict={**cfg, "resume": last})


def test_old_resume_entries_still_find_their_best_model_folder(tmp_path, monkeypatch):
    """-last folders saved before named the best-model folder as given (relative to the training directory, or
    absolute): read there when it exists, else beside the -last folder."""
    from recbole_msl.trainer.resume import best_model_folder

    (tmp_path / "saved" / "X").mkdir(parents=True)
    last = str(tmp_path / "saved" / "X-last")
    best = str(tmp_path / "saved" / "X")
    assert best_model_folder(last, {"best_model": "../X", "best_model_relative_to": "this folder"}) == best
    assert best_model_folder(last, {"best_model": best}) == best
    monkeypatch.chdir(tmp_path)
    assert best_model_folder(last, {"best_model": "saved/X"}) == best  # from the training directory
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert best_model_folder(last, {"best_model": "saved/X"}) == best  # from anywhere else: beside it


# ------------------------------------------------------------------ 2. options no layer knows
def _train_args(tmp, llm):
    write_atomic(os.path.join(tmp, "data"), "set")
    return ["--model=LLMMSL", "--dataset=set", f"--llm_path={llm}", f"--data_path={tmp}/data",
            f"--checkpoint_dir={tmp}/saved", "--item_text_field=title", LOAD_COL, "--epochs=1",
            "--train_batch_size=8", "--micro_batch_size=4", "--num_beams=10", "--topk=[5,10]",
            "--eval_max_users=3", "--show_progress=False", "--log_wandb=False", "--show_examples=0"]


def test_typo_on_the_command_line_is_refused(tiny_llm_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = _train_args(str(tmp_path), tiny_llm_dir)
    assert main(["train", *args, "--lerning_rate=0.5"]) == 2
    line = _error_line(capsys)
    assert line.startswith("error: unknown option --lerning_rate; did you mean --learning_rate?"), line
    assert "--allow_unknown_keys=True" in line
    assert main(["train", *args, "--epoch=3", "--lerning_rate=0.5"]) == 2
    line = _error_line(capsys)
    assert "--epoch (did you mean --epochs?)" in line and "--lerning_rate (did you mean --learning_rate?)" in line
    assert not os.path.exists(tmp_path / "saved") or not os.listdir(tmp_path / "saved")  # refused before training


def test_typo_in_a_config_file_is_refused(tiny_llm_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("learning_rate: 0.001\nlerning_rate: 0.5\n")
    args = _train_args(str(tmp_path), tiny_llm_dir)
    assert main(["train", *args, f"--config_files={tmp_path}/mine.yaml"]) == 2
    line = _error_line(capsys)
    assert "unknown option lerning_rate in config file" in line and "mine.yaml" in line, line
    assert "did you mean learning_rate?" in line and "allow_unknown_keys: True" in line, line


def test_typo_in_config_dict_is_a_typed_error():
    with pytest.raises(UnknownOptionError, match="unknown option 'num_beam' in config_dict; did you mean 'num_beams'"):
        Config(model="LLMMSL", dataset="ml-100k", config_dict={"num_beam": 5})


def test_custom_keys_pass_with_the_escape_hatch(tmp_path):
    (tmp_path / "custom.yaml").write_text("my_yaml_key: 3\n")
    config = Config(model="LLMMSL", dataset="ml-100k", config_file_list=[str(tmp_path / "custom.yaml")],
                    cmd_args=["--allow_unknown_keys=True", "--my_key=1"])
    assert config["my_key"] == 1 and config["my_yaml_key"] == 3


def test_every_key_of_recbole_and_the_plugin_is_known():
    """RecBole's data-set keys and YAMLs, every model's YAML, the plugin's YAMLs and profiles: nothing valid refused."""
    from recbole_msl.recbole_seam.config import known_option_keys

    known = known_option_keys()
    assert {"RATING_FIELD", "benchmark_filename", "load_col", "threshold", "val_interval", "hidden_size", "n_heads",
            "eval_sample_users", "eval_sample_seed", "num_beams", "resume", "allow_unknown_keys", "encoding",
            "nproc", "wandb_project", "gpu_id", "worker"} <= known
    Config(model="SASRec", dataset="ml-100k", cmd_args=["--RATING_FIELD=rating", "--hidden_size=16",
                                                        "--benchmark_filename=None", "--threshold=None"])


def test_recommend_flag_typo_is_refused(trained_here, monkeypatch, capsys):
    here, _, result, _ = trained_here
    monkeypatch.chdir(here)
    assert main(["recommend", f"--checkpoint={result['saved_model_file']}", "--history=2,3,4", "--top_k=2"]) == 2
    line = _error_line(capsys)
    assert line.startswith("error: unknown option --top_k; did you mean --topk?"), line


def test_compare_refuses_empty_seeds_and_typos(tmp_path, capsys):
    base = ["compare", "--comparison=ml-100k-cpu", "--report_only", f"--results_dir={tmp_path}"]
    assert main(base + ["--seeds="]) == 2
    assert "seeds must be a non-empty list" in _error_line(capsys)
    assert main(base + ["--lerning_rate=0.5"]) == 2
    assert "unknown option --lerning_rate; did you mean --learning_rate?" in _error_line(capsys)


# ------------------------------------------------------------------ 3. a damaged adapter
def test_edited_adapter_bytes_are_refused(trained_here, tmp_path, monkeypatch, capsys):
    here, _, result, _ = trained_here
    monkeypatch.chdir(here)
    broken = tmp_path / "broken"
    shutil.copytree(result["saved_model_file"], broken)
    weights = broken / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = b"\xff" * 64  # float32 NaNs in the last tensor, same size, still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedCheckpointError, match="adapter_model.safetensors does not match its checksum"):
        Recommender(str(broken))
    assert main(["recommend", f"--checkpoint={broken}", "--history=2,3,4"]) == 2
    assert "adapter_model.safetensors does not match its checksum" in _error_line(capsys)
    assert os.path.isfile(broken / "manifest.json")  # best-model folders carry checksums, as -last folders do


def test_non_finite_adapter_weights_are_refused(trained_here, tmp_path, monkeypatch):
    here, _, result, _ = trained_here
    monkeypatch.chdir(here)
    broken = tmp_path / "nan"
    shutil.copytree(result["saved_model_file"], broken)
    weights = load_file(str(broken / "adapter_model.safetensors"))
    name = min(weights)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(broken / "adapter_model.safetensors"))
    (broken / "manifest.json").unlink(missing_ok=True)  # as in a folder saved before checksums
    with pytest.raises(DamagedCheckpointError, match=f"non-finite .*{name}"):
        Recommender(str(broken))


def test_ranking_without_a_finished_title_is_an_error(trained_here, monkeypatch):
    here, _, result, _ = trained_here
    monkeypatch.chdir(here)
    rec = Recommender(result["saved_model_file"])
    with torch.no_grad():
        for name, param in rec.model.named_parameters():
            if "lora_" in name:
                param.fill_(float("nan"))
    with pytest.raises(EmptyRankingError, match="no title"):
        rec.recommend(["2", "3", "4"], topk=3)
    assert isinstance(EmptyRankingError("x"), ConfigError)
