"""Resume checkpoints: everything a run needs to continue after an epoch as if it had never stopped.

``<saved>-last/`` is the adapter folder of :mod:`recbole_msl.checkpoint` plus
``trainer_state.json`` (epoch, step, scheduler, early-stopping counters, best result, tau trace,
the settings a continuation must share), ``trainer_state.safetensors`` (optimizer moments and
every rank's RNG states as plain tensors) and ``manifest.json`` (SHA-256 of every file), so a
truncated or edited file is refused before anything is loaded. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import random

import numpy as np
import torch

from ..checkpoint import (
    MANIFEST_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    check_data_identity,
    json_safe,
    manifest_problem,
    read_state,
    save_checkpoint,
)
from ..errors import ConfigError, first_line
from ..lm.options import BackboneOptions, LoraOptions, resume_keys
from ..model.options import LLMMSLOptions
from .options import TrainingSettings

TRAINER_STATE_FILE = "trainer_state.json"
TRAINER_TENSORS_FILE = "trainer_state.safetensors"
RESUME_FORMAT = 2  # 2: tau_trace holds one record per optimizer step (tau used, ATS estimate)

# Settings a resumed run must share with the run it continues, or it would not be the same run: the fields marked
# ``resume`` in the options dataclasses, and the number of processes
FINGERPRINT_KEYS = (*resume_keys(TrainingSettings, LLMMSLOptions, BackboneOptions, LoraOptions), "world_size")


def _setting(config, key: str):
    value = config[key]
    if key == "llm_path" and isinstance(value, str) and os.path.exists(value):
        return os.path.abspath(value)  # the same backbone, named from another directory
    return json_safe(value)


def fingerprint(config, world_size: int, train_interactions: str | None = None) -> dict:
    """The settings a continuation must share, and (when given) the SHA-256 of the training split's rows."""
    found = {key: world_size if key == "world_size" else _setting(config, key) for key in FINGERPRINT_KEYS}
    if train_interactions is not None:
        found["train_interactions"] = train_interactions
    return found


def split_fingerprint(dataset, fields: list[str]) -> str:
    """SHA-256 of a split's rows (the given fields, in the split's order): another .inter file gives another one."""
    digest = hashlib.sha256()
    for name in fields:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(dataset.inter_feat[name].numpy()).tobytes())
    return digest.hexdigest()


def check_fingerprint(folder: str, saved: dict, now: dict) -> None:
    for key, value in now.items():
        if key in saved and saved[key] != value and key == "train_interactions":
            raise ConfigError(f"cannot resume from {folder}: its training split's interactions differ from this run's "
                              f"(the .inter file or the split changed); resume on the data it was trained on")
        if key in saved and saved[key] != value:
            raise ConfigError(f"cannot resume from {folder}: it was trained with {key}={saved[key]!r}, "
                              f"this run has {key}={value!r}; resume with the original settings")


# ------------------------------------------------------------------ RNG and optimizer state as tensors
def rng_tensors(loader_generator: torch.Generator) -> dict[str, torch.Tensor]:
    """This process's RNG states (python, numpy, torch, CUDA, the loader's shuffle generator) as tensors."""
    version, words, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    local = {
        "python": torch.tensor(list(words), dtype=torch.int64),
        "python_gauss": torch.tensor([gauss is None, gauss or 0.0, version], dtype=torch.float64),
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_meta": torch.tensor([pos, has_gauss, cached], dtype=torch.float64),
        "torch": torch.get_rng_state(),
        "loader": loader_generator.get_state(),
    }
    if torch.cuda.is_available():
        local["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return local


def restore_rng(tensors: dict, rank: int, loader_generator: torch.Generator) -> None:
    """Put rank ``rank``'s saved RNG states back, so dropout and the next epoch's shuffle continue unchanged."""
    def get(name):
        return tensors[f"rng.{rank}.{name}"]

    gauss = get("python_gauss").tolist()
    random.setstate((int(gauss[2]), tuple(int(w) for w in get("python").tolist()), None if gauss[0] else gauss[1]))
    pos, has_gauss, cached = get("numpy_meta").tolist()
    np.random.set_state(("MT19937", get("numpy").numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(get("torch"))
    loader_generator.set_state(get("loader"))
    if torch.cuda.is_available() and f"rng.{rank}.cuda" in tensors:
        torch.cuda.set_rng_state_all(list(get("cuda")))


def optimizer_state(optimizer) -> tuple[dict, dict, list]:
    """(tensors ``optimizer.<param>.<slot>``, scalar slots, param groups) of an optimizer's state."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, scalars, state["param_groups"]


def load_optimizer_state(optimizer, trainer_state: dict, tensors: dict) -> None:
    current = optimizer.state_dict()
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    for index, values in trainer_state["optimizer_scalars"].items():
        slots.setdefault(int(index), {}).update(values)
    groups = []
    for saved, now in zip(trainer_state["optimizer_groups"], current["param_groups"], strict=True):
        groups.append({k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in saved.items()})
    optimizer.load_state_dict({"state": slots, "param_groups": groups})


# ------------------------------------------------------------------ the trainer's counters
def trainer_state(trainer, epoch: int, validated: bool = True) -> tuple[dict, dict]:
    """(plain-data state, optimizer tensors) of an LLMMSL trainer after ``epoch``; ``validated=False``: after its
    training, before its validation (a resume validates it and goes on, without training it again)."""
    tensors, scalars, groups = optimizer_state(trainer.optimizer)
    best = trainer.best_valid_result
    state = {
        "epoch": epoch, "validated": validated, "global_step": trainer.global_step, "cur_step": trainer.cur_step,
        "valid_step": trainer.valid_step, "stopped": trainer.stopped, "best_valid_score": trainer.best_valid_score,
        "best_valid_result": dict(best) if best is not None else None,
        # relative to the -last folder that holds it, so the pair can be moved or resumed from any directory
        "best_model": os.path.relpath(os.path.abspath(trainer.saved_model_file), os.path.abspath(trainer.resume_folder)),
        "best_model_relative_to": "this folder", "best_model_saved": os.path.isdir(trainer.saved_model_file),
        "train_loss_dict": {str(k): v for k, v in trainer.train_loss_dict.items()}, "tau_trace": trainer.tau_trace,
        "scheduler": trainer.scheduler.state_dict(), "optimizer_groups": groups, "optimizer_scalars": scalars,
        "fingerprint": fingerprint(trainer.config, trainer.world_size, trainer.train_interactions),
    }
    return state, tensors


def restore_trainer(trainer, folder: str, train_data=None) -> None:
    """Load a verified ``-last`` folder into ``trainer`` (its schedule already built); one-line errors."""
    from ..checkpoint import load_checkpoint

    state, tensors = load_resume_checkpoint(folder)
    try:
        check_fingerprint(folder, state["fingerprint"],
                          fingerprint(trainer.config, trainer.world_size, trainer.train_interactions))
        if f"rng.{trainer.rank}.torch" not in tensors:
            raise ConfigError(f"cannot resume from {folder}: it holds no state for rank {trainer.rank}; "
                              f"resume with the number of processes it was saved with")
        check_data_identity(read_state(folder).get("data"), trainer.data_identity, f"cannot resume from {folder}: it")
        load_checkpoint(trainer.model, folder)
        load_optimizer_state(trainer.optimizer, state, tensors)
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.start_epoch = int(state["epoch"]) + 1
        if state.get("validated", True) is False:  # stopped during that epoch's validation: validate it again
            trainer.start_epoch = trainer.pending_validation = int(state["epoch"])
        trainer.global_step, trainer.cur_step = int(state["global_step"]), int(state["cur_step"])
        trainer.valid_step, trainer.stopped = int(state["valid_step"]), bool(state["stopped"])
        trainer.best_valid_score = float(state["best_valid_score"])
        trainer.best_valid_result = state["best_valid_result"]
        trainer.train_loss_dict = {int(k): v for k, v in state["train_loss_dict"].items()}
        trainer.tau_trace = [dict(record) for record in state["tau_trace"]]
        trainer.saved_model_file = best_model_folder(folder, state)
        if state["best_model_saved"] and not os.path.isdir(trainer.saved_model_file):
            raise ConfigError(f"the best-model folder {trainer.saved_model_file} named by {folder} is missing; "
                              f"put it back or start a new run without --resume")
        if train_data is not None:
            restore_rng(tensors, trainer.rank, train_data.generator)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"cannot resume from {folder}: its training state does not fit this run "
                          f"({type(err).__name__}: {first_line(err)}); "
                          f"resume with the settings it was saved with or start a new run") from None


def best_model_folder(folder: str, state: dict) -> str:
    """The absolute best-model folder a ``-last`` folder names: relative to that folder (new entries), or, in
    folders saved before, absolute or relative to the training directory (tried there, then beside ``folder``)."""
    entry = str(state["best_model"])
    if state.get("best_model_relative_to") == "this folder":
        return os.path.normpath(os.path.join(folder, entry))
    as_given = os.path.abspath(entry)
    beside = os.path.join(os.path.dirname(folder), os.path.basename(os.path.normpath(entry)))
    return next((path for path in (as_given, beside) if os.path.isdir(path)), as_given)


# ------------------------------------------------------------------ the folder
def save_resume_checkpoint(model, folder: str, state: dict, trainer_state: dict, tensors: dict) -> None:
    """A loadable checkpoint plus the trainer's state, with a manifest of checksums, written atomically."""
    from safetensors.torch import save_file

    def extra(staging):
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  os.path.join(staging, TRAINER_TENSORS_FILE))
        with open(os.path.join(staging, TRAINER_STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(json_safe({"format": RESUME_FORMAT, **trainer_state}), f, indent=1)

    save_checkpoint(model, folder, state, extra)  # writes the manifest of checksums over every file


def _refuse(folder: str, why: str):
    return ConfigError(f"cannot resume from {folder}: {why}; pass an intact <checkpoint>-last folder "
                       f"(saved after every epoch) or start a new run without --resume")


def _verified_manifest(folder: str) -> None:
    """Every file checked against the manifest's checksum: catches truncation and edits."""
    if not os.path.isdir(folder):
        raise _refuse(folder, "no such folder")
    if not os.path.isfile(os.path.join(folder, MANIFEST_FILE)):
        raise _refuse(folder, f"no {MANIFEST_FILE}, so it is not a resume checkpoint")
    if not any(os.path.isfile(os.path.join(folder, f)) for f in (TRAINER_STATE_FILE, TRAINER_TENSORS_FILE)):
        raise _refuse(folder, f"no {TRAINER_STATE_FILE}, so it is not a resume checkpoint (a best-model folder?)")
    problem = manifest_problem(folder, (WEIGHTS_FILE, STATE_FILE, TRAINER_STATE_FILE, TRAINER_TENSORS_FILE))
    if problem:
        raise _refuse(folder, problem)


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
        raise _refuse(folder, f"unreadable state ({first_line(err)})") from None
    if not isinstance(trainer_state, dict) or trainer_state.get("format") != RESUME_FORMAT:
        raise _refuse(folder, f"unknown {TRAINER_STATE_FILE} format")
    return trainer_state, tensors
