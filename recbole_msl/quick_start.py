"""Quick start without ray: train and test a model, and reload an LLMMSL checkpoint to recommend.

Mirrors ``recbole.quick_start.run_recbole`` (which imports ray at import time) with
the plugin's Config, model/trainer lookup and data helpers.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
import time
from logging import getLogger

import torch
from recbole.utils import get_flops, init_logger, init_seed, set_color

from .config import Config
from .data import create_dataset, data_preparation
from .errors import ConfigError, first_line
from .files import write_json
from .registry import get_model, get_trainer, is_plugin_model
from .trainer.capture import ranked_hits
from .trainer.checkpoint import load_checkpoint, read_state
from .validate import is_int, positive_int


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


def check_outputs_writable(config) -> None:
    """Fail before any expensive work when a folder the run writes to cannot be written."""
    folders = [(config["checkpoint_dir"] or "saved", "checkpoint_dir", "set --checkpoint_dir to a writable folder"),
               ("log", "RecBole's log folder (./log)", "run from a writable folder"),
               ("log_tensorboard", "the tensorboard folder (./log_tensorboard)", "run from a writable folder")]
    for folder, what, fix in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise ConfigError(f"cannot write to {what} at {os.path.abspath(folder)} ({first_line(err)}); "
                              f"{fix}") from None


def _plain(result):
    """RecBole's OrderedDict of numpy floats as a dict of Python floats (what logs and JSON should show)."""
    return None if result is None else {k: float(v) for k, v in dict(result).items()}


@torch.no_grad()
def examples(model, eval_data, users: int, topk: int = 5) -> list[dict]:
    """The first ``users`` rows of ``eval_data``: last history titles, the target's title, the top-k titles."""
    batch = next(iter(eval_data))[0][:users]
    histories = model._histories(batch)
    scores = model.rank(histories)
    values, items = scores.topk(topk, dim=1)
    out = []
    for history, target, row_values, row_items in zip(histories, batch[model.POS_ITEM_ID].tolist(),
                                                      values.tolist(), items.tolist()):
        out.append({"history": [model.titles[i] for i in history[-5:]], "target": model.titles[target],
                    "top": [{"title": model.titles[i], "score": v, "hit": i == target}
                            for v, i in zip(row_values, row_items) if v != float("-inf")]})
    return out


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, cmd_args=None,
        dataset_cache=None, keep_test_hits=False):
    """Train on the train split, select on valid, report test; RecBole's result dict plus timings.

    ``dataset_cache`` (a dict) shares loaded data sets between runs of a comparison;
    ``keep_test_hits`` adds each test row's user, target and ranked hits (``test_hits``, for paired tests).
    The full result (with the tau trace) is also written to ``<checkpoint>.result.json``.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list,
                    config_dict=config_dict, cmd_args=cmd_args)
    if config["resume"] and not is_plugin_model(config["model"]):  # LLMMSL's trainer resumes inside fit
        raise ConfigError(f"resume continues LLMMSL runs only; drop --resume to train {config['model']} afresh")
    check_outputs_writable(config)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    start = time.perf_counter()
    data = _load_dataset(config, dataset_cache)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    data_time = time.perf_counter() - start

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    start = time.perf_counter()
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model_time = time.perf_counter() - start
    logger.info(net)
    if not is_plugin_model(config["model"]):  # get_flops deep-copies the model: not for an LLM
        from recbole.data.transform import construct_transform

        flops = get_flops(net, data, config["device"], logger, construct_transform(config))
        logger.info(set_color("FLOPs", "blue") + f": {flops}")

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    start = time.perf_counter()
    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"])
        fit_time = time.perf_counter() - start
        start = time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    except KeyboardInterrupt:
        folder = getattr(trainer, "resume_folder", None)
        raise RunInterrupted(folder if folder and os.path.isdir(folder) else None) from None
    test_time = time.perf_counter() - start
    best_valid_result, test_result = _plain(best_valid_result), _plain(test_result)

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "test_rows": len(test_data._dataset),  # evaluated (user, target) rows
        "timings": {"data_s": data_time, "model_load_s": model_time, "fit_s": fit_time,
                    "valid_s": trainer.validation_seconds, "test_s": test_time},
        "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "valid_metric": config["valid_metric"].lower(),
    }
    if keep_test_hits and trainer.last_topk is not None:
        result["test_hits"] = ranked_hits(test_data, trainer.last_topk)
    if saved:
        result["saved_model_file"] = os.path.abspath(trainer.saved_model_file)
    if hasattr(trainer, "tau_trace"):
        result["tau_trace"] = list(trainer.tau_trace)
    if is_plugin_model(config["model"]) and config["show_examples"]:
        result["examples"] = examples(net, test_data, positive_int(config["show_examples"], "show_examples"))
    result["result_file"] = os.path.abspath(os.path.splitext(trainer.saved_model_file)[0] + ".result.json")
    if config["local_rank"] == 0 or config["single_spec"]:
        write_json(result["result_file"], {k: v for k, v in result.items() if k != "test_hits"})
    if not config["single_spec"] and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return result


class Recommender:
    """A trained LLMMSL checkpoint with its data set, ready to rank items for any history."""

    def __init__(self, checkpoint: str, config_dict: dict | None = None):
        state = read_state(checkpoint)
        overrides = dict(state.get("overrides") or {})
        overrides.update(config_dict or {})
        overrides.update({"show_progress": False, "eval_max_users": None})
        self.config = Config(model=state["model"], dataset=state["dataset"], config_dict=overrides)
        init_seed(self.config["seed"], self.config["reproducibility"])
        logging.getLogger().setLevel(logging.WARNING)
        self.dataset = create_dataset(self.config)
        self.model = get_model(self.config["model"])(self.config, self.dataset).to(self.config["device"])
        load_checkpoint(self.model, checkpoint)
        self.model.eval()

    def _item_ids(self, history) -> list[int]:
        if isinstance(history, (str, bytes)) or not hasattr(history, "__iter__"):
            raise ConfigError(f"history must be a list of item ids, oldest first, not {history!r}; "
                              f"e.g. recommend(['1', '50', '172'])")
        tokens = self.dataset.field2token_id[self.dataset.iid_field]
        ids = []
        for item in history:
            if str(item) not in tokens:
                raise ConfigError(f"item {item!r} is not an item id of data set {self.config['dataset']}; "
                                  f"give ids from the first column of its .item file{self._did_you_mean(item)}")
            ids.append(tokens[str(item)])
        if not ids:
            raise ConfigError("the history is empty; give at least one item id")
        return ids

    def _did_you_mean(self, text) -> str:
        """Ids of titles that contain ``text`` (someone passed a title for an id)."""
        needle = str(text).lower()
        id2token = self.dataset.field2id_token[self.dataset.iid_field]
        matches = [(str(id2token[i]), t) for i, t in enumerate(self.model.titles) if t and needle in t.lower()][:3]
        return ("; titles containing it: " + ", ".join(f"{token} ({title})" for token, title in matches)
                if matches else "")

    @torch.no_grad()
    def recommend(self, history, topk: int = 10, exclude_history: bool = True):
        """Top-k (item id, title, score) for a history of item ids (oldest first), best first.

        Items of the history are left out inside the beam search (``exclude_history``), so ``topk``
        new items come back.
        """
        if not is_int(topk) or topk <= 0:
            raise ConfigError(f"topk must be a positive integer, not {topk!r}")
        if topk > self.model.opts.num_beams:
            raise ConfigError(f"topk {topk} exceeds num_beams {self.model.opts.num_beams}; lower topk or load "
                              f"the checkpoint with config_dict={{'num_beams': {topk}}}")
        ids = self._item_ids(history)
        scores = self.model.rank([ids[-self.model.opts.history_length:]], [ids] if exclude_history else None)[0]
        scores[0] = float("-inf")  # RecBole's padding item
        values, items = scores.topk(topk)
        id2token = self.dataset.field2id_token[self.dataset.iid_field]
        return [(str(id2token[i]), self.model.titles[i], float(v))
                for v, i in zip(values.tolist(), items.tolist()) if v != float("-inf")]


def recommend(checkpoint: str, history, topk: int = 10, config_dict: dict | None = None,
              exclude_history: bool = True):
    """One-shot helper: load ``checkpoint`` and return the top-k new items for ``history``."""
    return Recommender(checkpoint, config_dict).recommend(history, topk, exclude_history)
