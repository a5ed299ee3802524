"""A finished run's result: the dict ``run()`` returns and writes as ``<checkpoint>.result.json``, with an LLM
run's example rankings and how much of an assistant's own top-k its search through the trie keeps."""

from __future__ import annotations

import os

import torch

from .distributed import total
from .evaluation.protocol import seen_items
from .evaluation.records import ranked_hits
from .recbole_seam.registry import is_plugin_model
from .validate import positive_int


def plain_result(result):
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


def search_overlap(model, eval_data, k: int) -> dict:
    """Mean share of the assistant's own top ``k`` that ranking through the trie keeps, over ``eval_data``'s rows,
    with its standard error (the search error of the title decomposition)."""
    counts = torch.cat([model.search_overlap(model._histories(batch[0]), k) for batch in eval_data]) / k
    se = float(counts.std(unbiased=True) / counts.numel() ** 0.5) if counts.numel() > 1 else float("nan")
    return {"k": k, "mean": float(counts.mean()), "se": se, "rows": int(counts.numel()),
            "all_kept": float((counts == 1).double().mean())}



def run_result(config, net, trainer, test_data, best_valid_score, best_valid_result, test_result, timings: dict,
               assistant_grid=None, saved: bool = True, keep_test_hits: bool = False) -> dict:
    """What :func:`recbole_msl.quick_start.run` returns and writes to ``<checkpoint>.result.json``: RecBole's
    results, timings (``timings``: data_s, model_load_s, fit_s, test_s; valid_s is the trainer's), the assistant
    and its weight grid, tau's trace, example rankings; ``test_hits`` (each test row's ranked hits) when asked."""
    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "test_rows": total(len(test_data._dataset), config["device"]),  # evaluated (user, target) rows, every rank's shard
        "timings": {"data_s": timings["data_s"], "model_load_s": timings["model_load_s"], "fit_s": timings["fit_s"],
                    "valid_s": trainer.validation_seconds, "test_s": timings["test_s"]},
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
    return result
