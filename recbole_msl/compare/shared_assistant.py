"""Guided runs of one seed that would train the same assistant again load the one an earlier run trained.

An LLMMSL run with ``assistant: SASRec`` trains that model inside the run, seeded, on the run's own split
(:func:`recbole_msl.recbole_seam.build.build_run` seeds before it builds), so two runs of a comparison whose
assistant settings, data and evaluation keys and seed are the same train the same model. A guided row, its
sibling with the other loss and the assistant alone through the trie would train it three times; the later
ones load the first one's stored copy instead (``assistant_checkpoint``: its adapter folder), and their records
keep that training's validation and test metrics and name the run it came from.
"""

from __future__ import annotations

import json
import os

from ..checkpoint import ASSISTANT_WEIGHTS_FILE
from ..recbole_seam.assistant import assistant_config, plain_settings
from ..recbole_seam.config import Config
from ..recbole_seam.registry import is_plugin_model


def assistant_signature(run, dataset: str, seed: int, cmd_args: list[str]) -> str | None:
    """What decides the assistant ``run`` trains (its model and every setting it is built with), or None when the
    run trains none."""
    if not is_plugin_model(run.model):
        return None
    config = Config(model=run.model, dataset=dataset, config_file_list=run.config_files,
                    config_dict={**run.config, "seed": seed}, cmd_args=list(cmd_args), check_keys=False)
    if not config["assistant"] or config["assistant_checkpoint"]:
        return None
    name = str(config["assistant"])
    return json.dumps({"model": name, "settings": plain_settings(assistant_config(config, name))}, sort_keys=True)


def shared_assistant(spec, run, seed: int, cmd_args: list[str], finished: list[dict]) -> dict | None:
    """The finished record of this seed and comparison whose run trained the assistant ``run`` would train, with
    that assistant still stored in its adapter folder; None to train it (also when a run's settings do not
    build: the run itself then fails with the reason)."""
    runs = {r.name: r for r in spec.runs}
    sources = [record for record in finished
               if (record.get("assistant") or {}).get("source") == "trained" and record.get("seed") == seed
               and record.get("status") == "ok" and record.get("run") in runs and record["run"] != run.name
               and os.path.isfile(os.path.join(str(record.get("saved_model_file")), ASSISTANT_WEIGHTS_FILE))]
    if not sources:
        return None
    try:
        mine = assistant_signature(run, spec.dataset, seed, cmd_args)
        if mine is None:
            return None
        return next((record for record in sources
                     if assistant_signature(runs[record["run"]], spec.dataset, seed, cmd_args) == mine), None)
    except Exception:  # noqa: BLE001 - a setting that does not build: train as usual, and let the run say why
        return None


def take_assistant(config: dict, record: dict, source: dict) -> None:
    """Make the run ``config`` describes load ``source``'s assistant instead of training one, and say so in its
    ``record``."""
    config["assistant"], config["assistant_checkpoint"] = None, source["saved_model_file"]
    record["assistant_shared_with"] = source["run"]


def assistant_record(loaded: dict, source: dict) -> dict:
    """The record of an assistant loaded from ``source``'s folder (which would call it trained, as its stored
    settings do), with the metrics of the training it stands on."""
    trained = source["assistant"]
    return {**loaded, "source": "checkpoint", "trained_in": source["run"], "valid": trained.get("valid"),
            "test": trained.get("test"), "train_s": trained.get("train_s")}
