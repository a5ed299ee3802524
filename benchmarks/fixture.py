"""The shared setting every model benchmark runs on: LLMMSL on ml-100k with the default backbone.

Loading the backbone takes ~20 s on CPU, so the suite builds the model once per process and the
benchmarks share it (each one restores what it changes).
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

from .common import device, log

_CACHE: dict = {}
PROMPT_HISTORY = 10  # titles per prompt, as in the README main command
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base_overrides(llm_path: str | None = None) -> dict:
    """The CPU profile's model settings (README main command), without logging or checkpoints."""
    return {
        "llm_path": llm_path,
        "MAX_ITEM_LIST_LENGTH": 50,  # sequences long enough for the history-length sweep
        "num_beams": 10,
        "decode_batch_size": 10,
        "train_batch_size": 8,
        "show_progress": False,
        "state": "ERROR",
        "device": str(device()),
        "use_gpu": torch.cuda.is_available(),
        "checkpoint_dir": os.path.join(ROOT, "saved", "benchmarks"),
        "seed": 2020,
    }


def load_setting(llm_path: str | None = None, **extra):
    """(config, train data, LLMMSL model) on ml-100k; cached per (llm_path, extra)."""
    key = (llm_path, tuple(sorted(extra.items())))
    if key in _CACHE:
        return _CACHE[key]
    import recbole_msl  # noqa: F401  (numpy aliases for RecBole)
    from recbole_msl.recbole_seam.build import build_run
    from recbole_msl.recbole_seam.config import Config

    warnings.filterwarnings("ignore")
    logging.getLogger("recbole").setLevel(logging.ERROR)
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={**base_overrides(llm_path), **extra})
    log(f"loading LLMMSL ({llm_path or 'default SmolLM2-135M GGUF'}) ...")
    built = build_run(config, trainer=False)
    train, valid, model = built.train_data, built.valid_data, built.model
    model.opts.history_length = PROMPT_HISTORY  # the CPU profile's prompt; the sweep changes it
    _CACHE[key] = (config, train, valid, model)
    return _CACHE[key]


def drop_setting(llm_path: str | None = None, **extra) -> None:
    """Forget a setting loaded by :func:`load_setting`, so its model's memory is freed for the next one."""
    _CACHE.pop((llm_path, tuple(sorted(extra.items()))), None)


def training_batch(train, size: int, seed: int = 0):
    """The first ``size`` training sequences of a seeded shuffle: the same batch for every step compared."""
    torch.manual_seed(seed)
    interaction = next(iter(train))
    return interaction[:size]


def valid_users(valid, count: int):
    """The first ``count`` users of the validation split (one RecBole full-sort batch)."""
    batch = next(iter(valid))[0]
    return batch[:count]
