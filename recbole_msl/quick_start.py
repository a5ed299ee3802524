"""Quick start without ray: train and test a model, and reload an LLMMSL checkpoint to recommend.

Mirrors ``recbole.quick_start.run_recbole`` (which imports ray at import time) with
the plugin's Config, model/trainer lookup and data helpers.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from logging import getLogger

import torch
from recbole.utils import get_flops, init_logger, init_seed, set_color

from .checkpoint import load_checkpoint, read_state
from .compare.per_user import capture_topk, encode_hits, eval_rows, split_fingerprint
from .config import Config
from .data import create_dataset, data_preparation
from .errors import ConfigError
from .files import write_json
from .utils import get_model, get_trainer, is_plugin_model


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


def _time_validation(trainer) -> list[float]:
    """Accumulate the time ``fit`` spends in validation, so training and evaluation time can be told apart."""
    spent, validate = [0.0], trainer._valid_epoch

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return validate(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    trainer._valid_epoch = timed
    return spent


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, cmd_args=None,
        dataset_cache=None, per_user=False):
    """Train on the train split, select on valid, report test; RecBole's result dict plus timings.

    ``dataset_cache`` (a dict) shares loaded data sets between runs of a comparison;
    ``per_user`` adds each test row's user, target and ranked hits (for paired tests).
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list,
                    config_dict=config_dict, cmd_args=cmd_args)
    if config["resume"] and not is_plugin_model(config["model"]):  # LLMMSL's trainer resumes inside fit
        raise ConfigError(f"resume continues LLMMSL runs only; drop --resume to train {config['model']} afresh")
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
    valid_time = _time_validation(trainer)
    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"])
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    with capture_topk(trainer) as captured:
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    test_time = time.perf_counter() - start

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "timings": {"data_s": data_time, "model_load_s": model_time, "fit_s": fit_time,
                    "valid_s": valid_time[0], "test_s": test_time},
        "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "valid_metric": config["valid_metric"].lower(),
    }
    if per_user and captured:
        users, targets = eval_rows(test_data)
        result["test_per_user"] = {"users": users, "targets": targets, **encode_hits(captured[-1]),
                                   "fingerprint": split_fingerprint(users, targets)}
    if saved:
        result["saved_model_file"] = trainer.saved_model_file
    if hasattr(trainer, "tau_trace"):
        result["tau_trace"] = list(trainer.tau_trace)
    result["result_file"] = os.path.splitext(trainer.saved_model_file)[0] + ".result.json"
    if config["local_rank"] == 0 or config["single_spec"]:
        write_json(result["result_file"], {"model": config["model"], "dataset": config["dataset"],
                                           **{k: v for k, v in result.items() if k != "test_per_user"}})
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

    def _item_ids(self, history):
        tokens = self.dataset.field2token_id[self.dataset.iid_field]
        ids = []
        for item in history:
            if str(item) not in tokens:
                raise ConfigError(f"item {item} is not in data set {self.config['dataset']}; "
                                  f"give item ids as they appear in its .item file")
            ids.append(tokens[str(item)])
        return ids

    @torch.no_grad()
    def recommend(self, history, topk: int = 10):
        """Top-k (item token, title, score) for a history of item tokens, oldest first."""
        from recbole.data.interaction import Interaction

        ids = self._item_ids(history)[-self.model.opts.history_length:]
        if not ids:
            raise ConfigError("the history is empty; give at least one item id")
        if topk > self.model.opts.num_beams:
            raise ConfigError(f"topk {topk} exceeds num_beams {self.model.opts.num_beams}; lower topk")
        seq = torch.zeros(1, self.model.max_seq_length, dtype=torch.long)
        seq[0, :len(ids)] = torch.tensor(ids)
        batch = Interaction({self.model.ITEM_SEQ: seq, self.model.ITEM_SEQ_LEN: torch.tensor([len(ids)])})
        scores = self.model.full_sort_predict(batch.to(self.config["device"]))[0]
        scores[0] = float("-inf")
        values, items = scores.topk(topk)
        id2token = self.dataset.field2id_token[self.dataset.iid_field]
        return [(str(id2token[i]), self.model.titles[i], float(v))
                for v, i in zip(values.tolist(), items.tolist()) if v != float("-inf")]


def recommend(checkpoint: str, history, topk: int = 10, config_dict: dict | None = None):
    """One-shot helper: load ``checkpoint`` and return the top-k items for ``history``."""
    return Recommender(checkpoint, config_dict).recommend(history, topk)
