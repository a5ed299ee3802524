"""The assistant: a RecBole sequential model whose item distribution guides LLMMSL's beam search.

It comes from one of two places: ``assistant: SASRec`` (any RecBole sequential model) is trained here,
on the LLM run's own data set object, so on exactly its split, and selected on validation by RecBole's
trainer; or ``assistant_checkpoint`` names one trained earlier (a ``.pth`` this plugin's runs write, or an
LLMMSL checkpoint folder ranked with one), refused unless its items are this data set's.

Its settings are RecBole's defaults for that model, the data set's and evaluation settings of the run
(``config_dict`` and the command line; the LLM's own options and training profile are left out) and
``assistant_config`` on top, so ``assistant_config: {epochs: 100, stopping_step: 5}`` trains what a
comparison's SASRec row with those settings trains. A trained assistant is stored inside the adapter
folder as plain tensors (``assistant.safetensors``) and its settings (``assistant.json``).
"""

from __future__ import annotations

import json
import logging
import os
import time

import torch
from recbole.utils import ModelType
from safetensors.torch import load_file

from ..checkpoint import ASSISTANT_SETTINGS_FILE as SETTINGS_FILE
from ..checkpoint import ASSISTANT_WEIGHTS_FILE as WEIGHTS_FILE
from ..checkpoint import item_identity, json_safe
from ..errors import ConfigError, DataMismatchError, first_line
from .build import build_run
from .config import Config
from .option_keys import ALLOW_UNKNOWN, allows_unknown, check_model_keys
from .property_files import property_files, read_config_file
from .registry import get_model, is_plugin_model

logger = logging.getLogger(__name__)

# evaluation settings the assistant shares with the run (the same users, metrics and selection), whichever layer set
# them; eval_batch_size stays the assistant model's own (it changes speed, not results)
EVALUATION_KEYS = {"eval_args", "repeatable", "metrics", "topk", "valid_metric", "valid_metric_bigger",
                   "metric_decimal_place", "eval_max_users", "eval_sample_users", "eval_sample_unit",
                   "eval_sample_seed", "eval_exclude_seen"}
# run-level keys never passed on to the assistant
_LLM_ONLY = {"resume", "trained_checkpoint", "checkpoint_dir", "allow_unknown_keys"}


def assistant_source(config) -> tuple[str | None, str | None]:
    """(model name to train, checkpoint to load): at most one is set."""
    name, path = config["assistant"], config["assistant_checkpoint"]
    if name and path:
        raise ConfigError("set either assistant (a model to train) or assistant_checkpoint (one trained earlier), "
                          "not both")
    return (str(name) if name else None), (str(path) if path else None)


def check_assistant_model(name: str) -> None:
    """One line for an unknown model name or one that is no sequential model (it must rank from a history)."""
    if is_plugin_model(name):
        raise ConfigError(f"assistant {name} is the LLM itself; name a RecBole sequential model such as SASRec")
    model_class = get_model(name)  # one-line error for an unknown name
    if getattr(model_class, "type", None) != ModelType.SEQUENTIAL:
        raise ConfigError(f"assistant {name} is not a sequential model, so it cannot rank from a history; use one "
                          f"such as SASRec, GRU4Rec, BERT4Rec")


def assistant_overrides(config) -> dict:
    """``assistant_config`` as a dict; one line for another form (``epochs``, YAML's ``{epochs:3}`` without a space)."""
    raw = config["assistant_config"]
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict) or any(v is None and ":" in str(k) for k, v in raw.items()):
        raise ConfigError(f"assistant_config must be a mapping of the assistant's settings, not {raw!r}: write "
                          f"assistant_config: {{epochs: 3}} in YAML (a space after each colon) or "
                          f"--assistant_config=\"{{'epochs': 3}}\" on the command line")
    return dict(raw)


def check_assistant_settings(config, name: str | None) -> None:
    """Before any data loads: ``assistant_config`` is a mapping, belongs to a run with an assistant, and holds only
    keys the assistant model ``name`` reads (unless ``allow_unknown_keys``)."""
    overrides = assistant_overrides(config)
    if overrides and not (config["assistant"] or config["assistant_checkpoint"]):
        raise ConfigError("assistant_config is set but the run has no assistant, so it does nothing; add "
                          "--assistant=SASRec (or another sequential model), or drop assistant_config")
    if name and not allows_unknown(config[ALLOW_UNKNOWN]):
        check_model_keys(overrides, name, " (in assistant_config)")


def assistant_config(config, name: str, overrides: dict | None = None):
    """RecBole Config of the assistant: the run's data and evaluation settings, not the LLM's (see the module)."""
    llm_keys = set()
    for path in property_files(str(config["model"]), str(config["dataset"])):
        if os.sep + "model" + os.sep in path:
            llm_keys |= set(read_config_file(path))
    dataset_keys = set(config.parameters["Dataset"])
    own = dict(getattr(config, "variable_config_dict", {}) or {})
    own.update(getattr(config, "cmd_config_dict", {}) or {})
    kept = {k: v for k, v in own.items() if k not in llm_keys and k not in _LLM_ONLY and not k.startswith("assistant")}
    # the data set object is the LLM run's, and so are the users it is evaluated on: their settings, whichever layer
    # set them (a profile file included), are the run's final ones
    kept.update({k: config[k] for k in dataset_keys | EVALUATION_KEYS if k in config.final_config_dict})
    kept.update({"seed": config["seed"], "checkpoint_dir": config["checkpoint_dir"] or "saved",
                 "show_progress": config["show_progress"]})
    kept.update(dict(overrides if overrides is not None else assistant_overrides(config)))
    return Config(model=name, dataset=config["dataset"], config_dict=kept, check_keys=False)


def train_assistant(config, dataset, run_stem: str | None) -> tuple[torch.nn.Module, dict]:
    """Train ``config['assistant']`` on ``dataset``'s split, select it on validation, test it; (model, record)."""
    name = str(config["assistant"])
    check_assistant_model(name)
    aconfig = assistant_config(config, name)
    if run_stem:
        aconfig.run_stem = f"{run_stem}-assistant"
    start = time.perf_counter()
    built = build_run(aconfig, dataset=dataset)
    train_data, valid_data, test_data, model, trainer = (built.train_data, built.valid_data, built.test_data,
                                                         built.model, built.trainer)
    logger.info(f"training the assistant {name} on the same split ({aconfig['epochs']} epochs at most)")
    _, valid = trainer.fit(train_data, valid_data, saved=True, show_progress=aconfig["show_progress"])
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=aconfig["show_progress"])
    record = {"model": name, "source": "trained", "config": plain_settings(aconfig),
              "valid": {k: float(v) for k, v in dict(valid or {}).items()},
              "test": {k: float(v) for k, v in dict(test or {}).items()},
              "train_s": round(time.perf_counter() - start, 2), "file": os.path.abspath(trainer.saved_model_file),
              "items": item_identity(dataset)}
    logger.info(f"assistant {name}: valid {record['valid']}, test {record['test']}")
    return _frozen(model), record


def plain_settings(aconfig) -> dict:
    """The assistant's hyperparameters that rebuild it (its model YAML keys and the run's overrides), JSON-safe."""
    keep = dict(getattr(aconfig, "variable_config_dict", {}) or {})
    keep.pop("checkpoint_dir", None)
    return json_safe(keep)


def _frozen(model):
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def load_assistant(config, dataset) -> tuple[torch.nn.Module, dict]:
    """The assistant ``config['assistant_checkpoint']`` names, checked against ``dataset``'s items."""
    path = os.path.abspath(str(config["assistant_checkpoint"]))
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, SETTINGS_FILE)):
            raise ConfigError(f"assistant_checkpoint {path} holds no assistant ({SETTINGS_FILE}); pass a .pth of a "
                              f"RecBole model or an LLMMSL checkpoint folder ranked with an assistant")
        return read_assistant(path, config, dataset)
    if not os.path.isfile(path):
        raise ConfigError(f"assistant_checkpoint {path} does not exist; pass the .pth a SASRec (or other sequential "
                          f"model) run of this data set saved")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickle with objects, or a damaged file
        raise ConfigError(f"assistant_checkpoint {path} cannot be read as plain tensors ({first_line(err)[:120]}); "
                          f"pass a .pth saved by run_recbole_msl.py (RecBole's own .pth pickles its Config)") from None
    saved = state.get("config") or {}
    name = str(saved.get("model") or "")
    check_assistant_model(name)
    given = assistant_overrides(config)
    if not allows_unknown(config[ALLOW_UNKNOWN]):
        check_model_keys(given, name, " (in assistant_config)")
    _check_items(state.get("items"), dataset, f"assistant_checkpoint {path}", saved.get("dataset"), config,
                 _embedding_rows(state.get("state_dict") or {}))
    settings = dict(saved.get("settings") or {})
    _check_settings(settings, given, config, path)
    aconfig = assistant_config(config, name, overrides={**settings, **given})
    model = get_model(name)(aconfig, dataset).to(config["device"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError:
        raise ConfigError(f"assistant_checkpoint {path} does not fit {name} with these settings "
                          f"({_shape_differences(state['state_dict'], model.state_dict())}); give the "
                          f"assistant_config it was trained with") from None
    record = {"model": name, "source": "checkpoint", "file": path, "config": plain_settings(aconfig),
              "items": item_identity(dataset)}
    return _frozen(model), record


def _check_settings(settings: dict, given: dict, config, path: str) -> None:
    """A loaded assistant keeps the settings it was trained with (stored in its .pth since 2026-12-07): refuse an
    ``assistant_config`` or a history length that contradicts them, naming the key."""
    for key, value in given.items():
        if key in settings and settings[key] != value:
            raise ConfigError(f"assistant_checkpoint {path} was trained with {key}={settings[key]!r}, but "
                              f"assistant_config sets {key}={value!r}; drop {key} from assistant_config (a loaded "
                              f"assistant keeps its settings) or train a new assistant")
    trained = settings.get("MAX_ITEM_LIST_LENGTH")
    if trained is not None and trained != config["MAX_ITEM_LIST_LENGTH"]:
        raise ConfigError(f"assistant_checkpoint {path} was trained with MAX_ITEM_LIST_LENGTH={trained}, this run "
                          f"uses {config['MAX_ITEM_LIST_LENGTH']}; pass --MAX_ITEM_LIST_LENGTH={trained} or train "
                          f"the assistant with this run's (--assistant=...)")


def _shape_differences(saved: dict, built: dict) -> str:
    """Which weights of a state dict do not fit the model built from the settings, named."""
    parts = [f"{k}: saved {list(saved[k].shape)}, built {list(built[k].shape)}" for k in saved
             if k in built and hasattr(saved[k], "shape") and saved[k].shape != built[k].shape]
    parts += [f"{k} missing from the checkpoint" for k in built if k not in saved]
    parts += [f"{k} unknown to the model" for k in saved if k not in built]
    return "; ".join(parts[:3]) or "the weights do not match"


def _embedding_rows(state_dict: dict) -> int | None:
    weight = state_dict.get("item_embedding.weight")
    return int(weight.shape[0]) if weight is not None else None


def _check_items(saved: dict | None, dataset, what: str, saved_dataset, config, rows: int | None) -> None:
    """Refuse an assistant whose item ids mean other items: another data set, item count or item tokens."""
    now = item_identity(dataset)
    if saved_dataset and str(saved_dataset) != str(config["dataset"]):
        raise DataMismatchError(f"{what} was trained on data set {saved_dataset}, not {config['dataset']}; train the "
                                f"assistant on {config['dataset']} (assistant: SASRec trains one)")
    if saved:
        if saved.get("items") != now["items"] or saved.get("sha256") != now["sha256"]:
            raise DataMismatchError(f"{what} was trained on other items ({saved.get('items')} items, sha256 "
                                    f"{str(saved.get('sha256'))[:12]}) than data set {config['dataset']} has "
                                    f"({now['items']}, sha256 {now['sha256'][:12]}); train the assistant on this data")
        return
    if rows is not None and rows != now["items"] + 1:
        raise DataMismatchError(f"{what} has {rows - 1} items, data set {config['dataset']} has {now['items']}; "
                                f"train the assistant on this data")
    logger.warning(f"{what} records no item fingerprint: only its data set name and item count were checked")


def read_assistant(folder: str, config, dataset) -> tuple[torch.nn.Module, dict]:
    """The assistant stored in an adapter folder, rebuilt on ``dataset`` (its items checked first)."""
    with open(os.path.join(folder, SETTINGS_FILE), encoding="utf-8") as f:
        record = json.load(f)
    name = str(record["model"])
    _check_items(record.get("items"), dataset, f"the assistant in {folder}", None, config, None)
    aconfig = assistant_config(config, name, overrides=dict(record.get("config") or {}))
    model = get_model(name)(aconfig, dataset).to(config["device"])
    model.load_state_dict(load_file(os.path.join(folder, WEIGHTS_FILE), device=str(config["device"])))
    return _frozen(model), {**record, "source": record.get("source", "trained")}
