"""Quick start without ray: train and test a model (:func:`run`); reload an LLMMSL checkpoint to recommend
(:class:`Recommender`, in :mod:`recbole_msl.recommender`).

Mirrors ``recbole.quick_start.run_recbole`` (which imports ray at import time) with
the plugin's Config, model/trainer lookup and data helpers. The checks before a run are in
:mod:`recbole_msl.run_checks`, the result it returns and writes in :mod:`recbole_msl.run_result`.
"""

from __future__ import annotations

import copy
import os
import secrets
import sys
import time
from logging import getLogger

import torch
from recbole.data.transform import construct_transform
from recbole.utils import get_flops, get_local_time, init_seed, set_color

from .core.random_states import kept_random_states
from .distributed import broadcast_text
from .files import write_json
from .recbole_seam.assistant import load_assistant, train_assistant
from .recbole_seam.build import build_run
from .recbole_seam.compat import init_logger
from .recbole_seam.config import Config
from .recbole_seam.data import create_dataset
from .recbole_seam.registry import is_plugin_model
from .recommender import Recommender, recommend  # noqa: F401 - the package's API, imported from here
from .run_checks import check_outputs_writable, check_run_config, guided_run
from .run_result import plain_result, run_result


def _dataset_key(config) -> str:
    """Everything RecBole's Dataset is built from, so equal keys mean an identical data set object."""
    keys = sorted(set(config.parameters["Dataset"]) | {"dataset", "data_path"})
    return repr([(k, config[k]) for k in keys])


def _load_dataset(config, cache):
    """The data set for ``config``; with a cache, loaded once and deep-copied for every further run."""
    if cache is None:
        return create_dataset(config)
    key = _dataset_key(config)
    if key not in cache:
        cache[key] = create_dataset(config)
    return copy.deepcopy(cache[key])


class RunInterrupted(Exception):
    """Ctrl-C during a run; ``resume_folder`` is the ``-last`` folder that continues it (None before the first)."""

    def __init__(self, resume_folder: str | None):
        super().__init__(resume_folder or "")
        self.resume_folder = resume_folder


def _run_stem(config) -> str:
    """``<date>-<tag>`` for this run, unused by any checkpoint, resume folder, result file or log it would name
    (one random 6-hex tag, so runs started in the same second never share one); rank 0's under torchrun."""
    folder, model = config["checkpoint_dir"] or "saved", config["model"]
    while True:
        stem = f"{get_local_time()}-{secrets.token_hex(3)}"
        names = [os.path.join(folder, f"{model}-{stem}{end}") for end in ("", "-last", ".pth", ".result.json")]
        names.append(os.path.join("log", model, f"{model}-{config['dataset']}-{stem}.log"))
        if not any(os.path.exists(name) for name in names):
            break
    if not config["single_spec"] and torch.distributed.is_initialized():
        stem = broadcast_text(stem, config["device"])
    return stem


def _load_assistant_early(config, data):
    """An ``assistant_checkpoint`` is read and checked before the LLM trains (a wrong file stops the run in seconds,
    not after hours), with every random state restored, so the training is what it would be without it."""
    with kept_random_states():
        return load_assistant(config, data)


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, cmd_args=None,
        dataset_cache=None, keep_test_hits=False):
    """Train on the train split, select on valid, report test; RecBole's result dict plus timings.

    ``dataset_cache`` (a dict) shares loaded data sets between runs of a comparison;
    ``keep_test_hits`` adds each test row's user, target and ranked hits (``test_hits``, for paired tests).
    The full result (with the tau trace) is also written to ``<checkpoint>.result.json``.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list,
                    config_dict=config_dict, cmd_args=cmd_args)
    check_run_config(config)
    check_outputs_writable(config)
    init_seed(config["seed"], config["reproducibility"])
    config.run_stem = _run_stem(config)  # the run's log, tensorboard folder and checkpoint share its <date>-<tag>
    init_logger(config, config.run_stem)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    start = time.perf_counter()
    data = _load_dataset(config, dataset_cache)
    logger.info(data)
    unbuilt = copy.deepcopy(data) if guided_run(config) and config["assistant"] else None  # the assistant's split
    load_s = time.perf_counter() - start
    built = build_run(config, dataset=data)
    train_data, valid_data, test_data, net, trainer = (built.train_data, built.valid_data, built.test_data,
                                                       built.model, built.trainer)
    data_time, model_time = load_s + built.data_s, built.model_s
    logger.info(net)
    if not is_plugin_model(config["model"]):  # get_flops deep-copies the model: not for an LLM
        flops = get_flops(net, data, config["device"], logger, construct_transform(config))
        logger.info(set_color("FLOPs", "blue") + f": {flops}")

    loaded = _load_assistant_early(config, data) if guided_run(config) and config["assistant_checkpoint"] else None
    start = time.perf_counter()
    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"])
        assistant_grid = None
        if guided_run(config):  # after the LLM's own training and selection, which it leaves unchanged
            assistant, record = (train_assistant(config, unbuilt, config.run_stem) if config["assistant"]
                                 else loaded)
            del unbuilt
            net.attach_assistant(assistant, record)
            assistant_grid = trainer.choose_assistant_weight(valid_data, show_progress=config["show_progress"])
            best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
        fit_time = time.perf_counter() - start
        start = time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    except KeyboardInterrupt:
        folder = getattr(trainer, "resume_folder", None)
        raise RunInterrupted(folder if folder and os.path.isdir(folder) else None) from None
    test_time = time.perf_counter() - start
    best_valid_result, test_result = plain_result(best_valid_result), plain_result(test_result)

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = run_result(config, net, trainer, test_data, best_valid_score, best_valid_result, test_result,
                        {"data_s": data_time, "model_load_s": model_time, "fit_s": fit_time, "test_s": test_time},
                        assistant_grid, saved, keep_test_hits)
    if config["local_rank"] == 0 or config["single_spec"]:
        write_json(result["result_file"], {k: v for k, v in result.items() if k != "test_hits"})
    if not config["single_spec"] and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return result
