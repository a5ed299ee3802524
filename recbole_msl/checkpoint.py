"""LLMMSL checkpoints: a standard peft adapter folder plus a small JSON of our own state.

``adapter_config.json`` + ``adapter_model.safetensors`` load with
``PeftModel.from_pretrained`` outside RecBole; ``msl_state.json`` holds tau, the
training position, the run's config and what identifies its data (the data set's
absolute folder and a SHA-256 of the ordered item ids and titles) as plain data;
``manifest.json`` holds the SHA-256 of every file, checked before anything is loaded.
Nothing is pickled, and a folder is written under a temporary name and renamed into
place. The resume checkpoint (:mod:`recbole_msl.trainer.resume`) is the same folder with
the trainer's state added. An LLMMSL run ranked with an assistant stores it here too
(``assistant.safetensors`` + ``assistant.json``), with the fingerprint of the items its ids mean.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import shutil
import tempfile

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import ConfigError, DamagedCheckpointError, DataMismatchError, as_os_error, first_line

logger = logging.getLogger(__name__)

STATE_FILE = "msl_state.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MANIFEST_FILE = "manifest.json"
ASSISTANT_WEIGHTS_FILE = "assistant.safetensors"
ASSISTANT_SETTINGS_FILE = "assistant.json"


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


# ------------------------------------------------------------------ checksums
def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str) -> None:
    """``manifest.json``: the SHA-256 of every other file in ``folder``."""
    sums = {name: sha256_file(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if name != MANIFEST_FILE and os.path.isfile(os.path.join(folder, name))}
    with open(os.path.join(folder, MANIFEST_FILE), "w", encoding="utf-8") as f:
        json.dump(sums, f, indent=1)


def manifest_problem(folder: str, needed=()) -> str | None:
    """What is wrong with ``folder`` by its manifest (damaged, a needed file unlisted, a file missing or changed),
    or None when every listed file matches its checksum."""
    try:
        with open(os.path.join(folder, MANIFEST_FILE), encoding="utf-8") as f:
            sums = json.load(f)
    except FileNotFoundError:
        return f"no {MANIFEST_FILE}"
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return f"{MANIFEST_FILE} is damaged"
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        return f"{MANIFEST_FILE} is damaged"
    if not set(needed) <= set(sums):
        return f"{MANIFEST_FILE} does not list {sorted(needed)}"
    for name, expected in sums.items():
        file = os.path.join(folder, os.path.basename(str(name)))
        if not os.path.isfile(file):
            return f"{name} is missing"
        if sha256_file(file) != expected:
            return f"{name} does not match its checksum (truncated or modified)"
    return None


# ------------------------------------------------------------------ the data a checkpoint was trained on
def data_identity(config, dataset, titles) -> dict:
    """The data set's absolute folder and a SHA-256 over its (item token, title) pairs sorted by token
    (``items_sha256``): the items and titles an adapter was trained with, whatever the order of the files' rows
    (which decides RecBole's internal ids, and which the adapter does not depend on: its rankings are mapped back
    through the data set loaded now). ``sha256`` is the older hash in RecBole's id order, kept so a checkpoint
    that stores only that one is still checked."""
    tokens = dataset.field2id_token[dataset.iid_field]
    pairs = [json.dumps([str(token), title], ensure_ascii=False) for token, title in zip(tokens[1:], titles[1:])]
    ordered = hashlib.sha256("".join(p + "\n" for p in pairs).encode("utf-8")).hexdigest()
    unordered = hashlib.sha256("".join(p + "\n" for p in sorted(pairs)).encode("utf-8")).hexdigest()
    return {"dataset": str(config["dataset"]), "data_path": os.path.abspath(str(config["data_path"])),
            "items": len(tokens) - 1, "items_sha256": unordered, "sha256": ordered}


def item_identity(dataset) -> dict:
    """The items a model's ids refer to: how many, and a SHA-256 of the item tokens in RecBole's id order."""
    tokens = dataset.field2id_token[dataset.iid_field]
    digest = hashlib.sha256("\n".join(str(t) for t in tokens[1:]).encode("utf-8")).hexdigest()
    return {"items": len(tokens) - 1, "sha256": digest}


def check_data_identity(saved: dict | None, now: dict, what: str) -> None:
    """Refuse data other than ``saved`` (``what`` says whose, e.g. ``checkpoint X``); warn when nothing was saved."""
    if not saved:
        logger.warning(f"{what} records no fingerprint of the data it was trained on (saved before they were "
                       f"recorded): {now['data_path']} is used unchecked")
        return
    key = "items_sha256" if "items_sha256" in saved else "sha256"  # checkpoints before 2026-12-07: id order
    if saved.get(key) != now[key]:
        raise DataMismatchError(
            f"{what} was trained on data set {saved.get('dataset')} at {saved.get('data_path')} ({saved.get('items')} "
            f"items, sha256 {str(saved.get(key))[:12]}), but the data found at {now['data_path']} differs "
            f"({now['items']} items, sha256 {now[key][:12]}); use the data it was trained on "
            f"(--data_path={os.path.dirname(str(saved.get('data_path')))}) or retrain")


def _write_staged(folder: str, fill, state: dict | None = None) -> None:
    """``fill(staging)`` a temporary sibling of ``folder``, write ``state`` (if given) and a manifest of checksums of
    every file there, then rename it into place: a reader never sees a half-written folder."""
    folder = os.path.abspath(folder)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    staging = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=f".tmp-{os.path.basename(folder)}-")
    try:
        fill(staging)
        if state is not None:
            with open(os.path.join(staging, STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(json_safe(state), f, indent=1)
        write_manifest(staging)
        _replace_dir(staging, folder)
    except SafetensorError as err:  # a full disk while the tensors are written: an OSError for the callers
        shutil.rmtree(staging, ignore_errors=True)
        raise as_os_error(err, staging) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_checkpoint(model, folder: str, state: dict, extra=None) -> None:
    """Write the adapter and ``state`` (and whatever ``extra(staging)`` adds) into ``folder`` atomically,
    with a manifest of checksums of every file."""
    def fill(staging):
        model.save_adapter(staging)
        if extra is not None:
            extra(staging)

    _write_staged(folder, fill, state)


def update_checkpoint(folder: str, state_update: dict, extra=None) -> None:
    """Rewrite ``folder`` atomically with ``state_update`` merged into its state and ``extra(staging)``'s files added
    (the assistant a run ranked with), and a fresh manifest."""
    state = {**read_state(folder), **json_safe(state_update)}

    def fill(staging):
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        if extra is not None:
            extra(staging)

    _write_staged(folder, fill, state)


def save_assistant(folder: str, model, record: dict) -> None:
    """Write the assistant's tensors and settings into ``folder`` (an adapter folder being staged)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, os.path.join(folder, ASSISTANT_WEIGHTS_FILE))
    with open(os.path.join(folder, ASSISTANT_SETTINGS_FILE), "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in record.items() if k != "file"} | {"trained_file": record.get("file")}, f,
                  indent=1)


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


def read_adapter(folder: str, device="cpu") -> dict:
    """The adapter's tensors, after checking the folder's manifest; one-line errors for a damaged folder and for
    non-finite weights (which would rank nothing). A folder saved before manifests is read unverified."""
    if os.path.isfile(os.path.join(folder, MANIFEST_FILE)):
        problem = manifest_problem(folder, (WEIGHTS_FILE, STATE_FILE))
        if problem:
            raise DamagedCheckpointError(f"checkpoint {folder} is damaged: {problem}; use an intact checkpoint "
                                         f"folder or retrain")
    else:
        logger.warning(f"{folder} has no {MANIFEST_FILE} (saved before checkpoints carried checksums): "
                       f"its files are read unverified")
    path = os.path.join(folder, WEIGHTS_FILE)
    try:
        weights = load_file(path, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise DamagedCheckpointError(f"{path} is damaged ({first_line(err)}); use an intact checkpoint folder") \
            from None
    bad = next((k for k, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        raise DamagedCheckpointError(f"{path} holds non-finite weights (NaN or inf in {bad}): the file is damaged or "
                                     f"its training diverged; use an intact checkpoint folder or retrain")
    return weights


def load_checkpoint(model, folder: str, weights: dict | None = None) -> dict:
    """Load adapter weights (``weights``, as :func:`read_adapter` returned them, or read now) and tau into
    ``model``, once the model has checked that its backbone is the one the checkpoint was trained on; return the
    saved state."""
    state = read_state(folder)
    model.check_backbone(state.get("backbone"), folder, (state.get("overrides") or {}).get("llm_path"))
    if weights is None:
        weights = read_adapter(folder, next(model.llm.parameters()).device)
    with torch.no_grad():
        model.load_trainable_state_dict(weights)
    model.load_other_parameter(state.get("other_parameter"))
    return state
