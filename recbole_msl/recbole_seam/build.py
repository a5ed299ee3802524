"""One way to build a run: config -> seed -> data set -> splits -> seed -> model -> trainer.

Training, reloading a checkpoint, learning curves, benchmarks and tests all build through
:func:`build_run`, so they seed, split and construct in the same order and get the same model
for the same config.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from recbole.utils import init_seed

from .data import create_dataset, data_preparation
from .registry import get_model, get_trainer


@dataclass
class Run:
    """What :func:`build_run` made; loaders are None without splits, the trainer None when not asked for."""

    config: Any
    dataset: Any  # the whole data set (built into the splits when there are splits)
    train_data: Any
    valid_data: Any
    test_data: Any
    model: Any
    trainer: Any
    data_s: float  # seconds spent loading and splitting the data
    model_s: float  # seconds spent constructing the model (an LLM: loading the backbone)


def build_data(config, dataset=None, splits: bool = True):
    """Seed, then load ``config``'s data set (or take ``dataset``, not built yet) and split it: (data set, (train,
    valid, test) loaders, or three None without ``splits``). The split of every run, and of a report that counts
    its training targets, is made here."""
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config) if dataset is None else dataset
    return data, (data_preparation(config, data) if splits else (None, None, None))


def build_run(config, dataset=None, splits: bool = True, trainer: bool = True) -> Run:
    """:func:`build_data`, then seed again (per process under torchrun) and construct the model on the training
    split and its trainer.

    ``splits=False``: no loaders and no trainer; the model is built on the whole data set (a checkpoint reloaded
    to recommend)."""
    start = time.perf_counter()
    data, loaders = build_data(config, dataset, splits)
    data_s = time.perf_counter() - start
    if splits:
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    start = time.perf_counter()
    model_data = loaders[0]._dataset if splits else data
    model = get_model(config["model"])(config, model_data).to(config["device"])
    model_s = time.perf_counter() - start
    made_trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model) if splits and trainer else None
    return Run(config, data, *loaders, model, made_trainer, data_s, model_s)
