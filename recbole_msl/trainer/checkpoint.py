"""LLMMSL checkpoints: a standard peft adapter folder plus a small JSON of our own state.

``adapter_config.json`` + ``adapter_model.safetensors`` load with
``PeftModel.from_pretrained`` outside RecBole; ``msl_state.json`` holds tau, the
training position and the run's config as plain data. Nothing is pickled, and a
folder is written under a temporary name and renamed into place.

A resume checkpoint is the same folder plus ``trainer_state.json`` (epoch, step,
scheduler, early-stopping counters, ...), ``trainer_state.safetensors`` (optimizer
moments and RNG states as plain tensors) and ``manifest.json`` (SHA-256 of every file),
so a truncated or edited file is refused before anything is loaded.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import shutil
import tempfile

import torch

from .errors import ConfigError

STATE_FILE = "msl_state.json"
WEIGHTS_FILE = "adapter_model.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
TRAINER_TENSORS_FILE = "trainer_state.safetensors"
MANIFEST_FILE = "manifest.json"
RESUME_FORMAT = 2  # 2: tau_trace holds one record per optimizer step (tau used, ATS estimate)


def plain(value):
    """JSON-safe copy of a config value (enums and devices become strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
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
            json.dump(plain(state), f, indent=1)
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
        raise ConfigError(f"{os.path.join(folder, WEIGHTS_FILE)} is damaged ({str(err).splitlines()[0]}); "
                          f"use an intact checkpoint folder") from None
    with torch.no_grad():
        model.load_trainable_state_dict(weights)
    model.load_other_parameter(state.get("other_parameter"))
    return state


# ------------------------------------------------------------------ resume checkpoints
def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_resume_checkpoint(model, folder: str, state: dict, trainer_state: dict, tensors: dict) -> None:
    """A loadable checkpoint plus the trainer's state, with a manifest of checksums, written atomically."""
    from safetensors.torch import save_file

    def extra(staging):
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  os.path.join(staging, TRAINER_TENSORS_FILE))
        with open(os.path.join(staging, TRAINER_STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(plain({"format": RESUME_FORMAT, **trainer_state}), f, indent=1)
        sums = {name: _sha256(os.path.join(staging, name)) for name in sorted(os.listdir(staging))}
        with open(os.path.join(staging, MANIFEST_FILE), "w", encoding="utf-8") as f:
            json.dump(sums, f, indent=1)

    save_checkpoint(model, folder, state, extra)


def _refuse(folder: str, why: str):
    return ConfigError(f"cannot resume from {folder}: {why}; pass an intact <checkpoint>-last folder "
                       f"(saved after every epoch) or start a new run without --resume")


def _verified_manifest(folder: str) -> dict:
    """The manifest's checksums, each checked against its file: catches truncation and edits."""
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isdir(folder):
        raise _refuse(folder, "no such folder")
    if not os.path.isfile(path):
        raise _refuse(folder, f"no {MANIFEST_FILE}, so it is not a resume checkpoint")
    try:
        with open(path, encoding="utf-8") as f:
            sums = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _refuse(folder, f"{MANIFEST_FILE} is damaged") from None
    needed = {WEIGHTS_FILE, STATE_FILE, TRAINER_STATE_FILE, TRAINER_TENSORS_FILE}
    if not isinstance(sums, dict) or not needed <= set(sums):
        raise _refuse(folder, f"{MANIFEST_FILE} does not list {sorted(needed)}")
    for name, expected in sums.items():
        file = os.path.join(folder, os.path.basename(str(name)))
        if not os.path.isfile(file):
            raise _refuse(folder, f"{name} is missing")
        if _sha256(file) != expected:
            raise _refuse(folder, f"{name} does not match its checksum (truncated or modified)")
    return sums


def load_resume_checkpoint(folder: str) -> tuple[dict, dict]:
    """(trainer state, tensors) of a verified resume checkpoint; tensors are read with safetensors (no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = os.path.abspath(folder)
    _verified_manifest(folder)
    try:
        with open(os.path.join(folder, TRAINER_STATE_FILE), encoding="utf-8") as f:
            trainer_state = json.load(f)
        tensors = load_file(os.path.join(folder, TRAINER_TENSORS_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError) as err:
        raise _refuse(folder, f"unreadable state ({str(err).splitlines()[0] if str(err) else type(err).__name__})") \
            from None
    if not isinstance(trainer_state, dict) or trainer_state.get("format") != RESUME_FORMAT:
        raise _refuse(folder, f"unknown {TRAINER_STATE_FILE} format")
    return trainer_state, tensors
