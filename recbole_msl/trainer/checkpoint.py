"""LLMMSL checkpoints: a standard peft adapter folder plus a small JSON of our own state.

``adapter_config.json`` + ``adapter_model.safetensors`` load with
``PeftModel.from_pretrained`` outside RecBole; ``msl_state.json`` holds tau, the
training position and the run's config as plain data. Nothing is pickled, and a
folder is written under a temporary name and renamed into place. The resume
checkpoint (:mod:`recbole_msl.trainer.resume`) is the same folder with the trainer's state added.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import tempfile

import torch

from ..errors import ConfigError, first_line

STATE_FILE = "msl_state.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def json_safe(value):
    """JSON-safe copy of a config value (enums and devices become strings)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.name
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _replace_dir(staging: str, final: str) -> None:
    if os.path.exists(final):
        old = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=".old-")
        os.replace(final, os.path.join(old, "x"))
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def save_checkpoint(model, folder: str, state: dict, extra=None) -> None:
    """Write the adapter and ``state`` (and whatever ``extra(staging)`` adds) into ``folder`` atomically."""
    folder = os.path.abspath(folder)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    staging = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=f".tmp-{os.path.basename(folder)}-")
    try:
        model.llm.save_pretrained(staging, save_embedding_layers=False)
        with open(os.path.join(staging, STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(json_safe(state), f, indent=1)
        if extra is not None:
            extra(staging)
        _replace_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_state(folder: str) -> dict:
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(folder, WEIGHTS_FILE)):
        raise ConfigError(f"{folder} is not an LLMMSL checkpoint (needs {WEIGHTS_FILE} and {STATE_FILE}); "
                          f"pass the folder a training run saved")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is damaged (not JSON); use an intact checkpoint folder") from None


def load_checkpoint(model, folder: str) -> dict:
    """Load adapter weights and tau into ``model``; return the saved state."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state = read_state(folder)
    device = next(model.llm.parameters()).device
    try:
        weights = load_file(os.path.join(folder, WEIGHTS_FILE), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ConfigError(f"{os.path.join(folder, WEIGHTS_FILE)} is damaged ({first_line(err)}); "
                          f"use an intact checkpoint folder") from None
    with torch.no_grad():
        model.load_trainable_state_dict(weights)
    model.load_other_parameter(state.get("other_parameter"))
    return state
