"""The assistant's settings and checkpoint are checked before the LLM trains: assistant_config's form and keys,
keys only other RecBole models read, and every assistant_checkpoint problem, each with one line naming the fix."""

import random

import numpy as np
import pytest
import torch

from recbole_msl.checkpoint import item_identity
from recbole_msl.errors import ConfigError, DataMismatchError, UnknownOptionError
from recbole_msl.recbole_seam.config import Config
from recbole_msl.run_checks import check_run_config


def _config(tiny_llm_dir, **override):
    return Config(model="LLMMSL", dataset="ml-100k", config_dict={"llm_path": tiny_llm_dir, **override})


@pytest.mark.parametrize("override, error, message", [
    ({"assistant_config": {"epoch": 1, "stoping_step": 2}}, UnknownOptionError,
     r"SASRec does not read epoch \(did you mean epochs\?\), stoping_step \(did you mean stopping_step\?\)"),
    ({"assistant_config": "epochs"}, ConfigError, "assistant_config must be a mapping .* not 'epochs'"),
    ({"assistant_config": {"epochs:3": None}}, ConfigError, r"a space after each colon"),
    ({"assistant": None, "assistant_weight": 0.0, "assistant_config": {"epochs": 3}}, ConfigError,
     "the run has no assistant, so it does nothing"),
    ({"assistant": None, "assistant_weight": 0.0, "hidden_size": 16}, UnknownOptionError,
     r"LLMMSL does not read hidden_size \(a setting of RecBole's .*assistant_config"),
    ({"temperature": 0.5}, UnknownOptionError, "LLMMSL does not read temperature .*SASRec does not read it either"),
])
def test_assistant_settings_are_checked_before_the_data_loads(tiny_llm_dir, override, error, message):
    settings = {"assistant": "SASRec", "assistant_weight": 1.0, **override}
    with pytest.raises(error, match=message) as info:
        check_run_config(_config(tiny_llm_dir, **settings))
    assert "\n" not in str(info.value)


def test_settings_the_assistant_reads_are_accepted(tiny_llm_dir):
    check_run_config(_config(tiny_llm_dir, assistant="SASRec", assistant_weight=1.0, hidden_size=16,
                             assistant_config={"epochs": 2, "n_layers": 1}))
    check_run_config(_config(tiny_llm_dir, hidden_size=16, allow_unknown_keys=True))  # the escape hatch


@pytest.fixture(scope="module")
def sasrec_state(tiny_llm_dir):
    """A SASRec state of ml-100k's items, written as this plugin's RecBole runs write one (with its settings)."""
    from recbole_msl.recbole_seam.assistant import assistant_config
    from recbole_msl.recbole_seam.compat import model_settings
    from recbole_msl.recbole_seam.data import create_dataset
    from recbole_msl.recbole_seam.registry import get_model

    config = _config(tiny_llm_dir, assistant="SASRec", assistant_weight=1.0,
                     assistant_config={"hidden_size": 16, "inner_size": 32})
    dataset = create_dataset(config)
    aconfig = assistant_config(config, "SASRec")
    model = get_model("SASRec")(aconfig, dataset)
    return {"config": {"model": "SASRec", "dataset": "ml-100k", "settings": model_settings(aconfig)},
            "items": item_identity(dataset), "state_dict": model.state_dict()}


def _run_stopping_at_training(tiny_run_config, monkeypatch, **settings):
    """Run until the LLM's training would start; return the random draws there (or raise what stopped it)."""
    from recbole_msl import run
    from recbole_msl.trainer import LLMMSLTrainer

    class Reached(Exception):
        pass

    draws = {}

    def fit(self, *args, **kwargs):
        draws.update(torch=torch.rand(3).tolist(), numpy=np.random.rand(3).tolist(), python=random.random())
        raise Reached

    monkeypatch.setattr(LLMMSLTrainer, "fit", fit)
    with pytest.raises(Reached):
        run("LLMMSL", "ml-100k", config_dict={**tiny_run_config, **settings})
    return draws


@pytest.mark.parametrize("damage, error, message", [
    ("missing", ConfigError, "does not exist"),
    ("text", ConfigError, "cannot be read as plain tensors"),
    ("bpr", ConfigError, "BPR is not a sequential model"),
    ("other data set", DataMismatchError, "trained on data set ml-1m"),
    ("other items", DataMismatchError, "other items"),
    ("other settings", ConfigError, r"was trained with hidden_size=16, but assistant_config sets hidden_size=32"),
    ("other history", ConfigError, "was trained with MAX_ITEM_LIST_LENGTH=10, this run uses 20"),
    ("old file, other sizes", ConfigError, r"item_embedding.weight: saved \[1683, 16\], built \[1683, 64\]"),
])
def test_assistant_checkpoint_problems_stop_the_run_before_the_llm_trains(
        sasrec_state, tiny_run_config, tmp_path, monkeypatch, damage, error, message):
    path = tmp_path / "assistant.pth"
    state, extra = dict(sasrec_state), {}
    if damage == "text":
        path.write_text("not a checkpoint")
    elif damage != "missing":
        if damage == "bpr":
            state["config"] = {"model": "BPR", "dataset": "ml-100k"}
        elif damage == "other data set":
            state["config"] = {**state["config"], "dataset": "ml-1m"}
        elif damage == "other items":
            state["items"] = {"items": 5, "sha256": "0" * 64}
        elif damage == "other settings":
            extra = {"assistant_config": {"hidden_size": 32}}
        elif damage == "other history":
            extra = {"MAX_ITEM_LIST_LENGTH": 20}
        else:  # a .pth written before settings were stored: the weights that do not fit are named
            state["config"] = {"model": "SASRec", "dataset": "ml-100k"}
        torch.save(state, path)
    with pytest.raises(error, match=message) as info:  # raised, not the training's sentinel
        _run_stopping_at_training(tiny_run_config, monkeypatch, assistant_checkpoint=str(path),
                                  assistant_weight=1.0, **extra)
    assert "\n" not in str(info.value)


def test_an_assistant_checkpoint_loads_with_its_own_settings_and_leaves_training_unchanged(
        sasrec_state, tiny_run_config, tmp_path, monkeypatch):
    path = tmp_path / "assistant.pth"
    torch.save(sasrec_state, path)  # hidden_size 16, which the run's settings do not say: read from the file
    guided = _run_stopping_at_training(tiny_run_config, monkeypatch, assistant_checkpoint=str(path),
                                       assistant_weight=1.0)
    alone = _run_stopping_at_training(tiny_run_config, monkeypatch)
    assert guided == alone  # loading the assistant first drew nothing from the random generators training uses
