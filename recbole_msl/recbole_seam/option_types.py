"""Types of RecBole's own options, which RecBole never checks: a string where a number belongs stops the run with
one line before RecBole trips on it deep inside training."""

from __future__ import annotations

import math
import re

from recbole.evaluator import metric_types

from ..errors import ConfigError
from ..validate import is_int

# RecBole options that RecBole itself never type-checks (a string there fails deep inside training)
_INT_OPTIONS = {"epochs": 0, "train_batch_size": 1, "eval_batch_size": 1, "stopping_step": 0,
                "eval_step": None, "MAX_ITEM_LIST_LENGTH": 1, "seed": None, "show_examples": 0}
_NUMBER_OPTIONS = {"learning_rate": 0.0, "weight_decay": 0.0}


def check_recbole_options(final: dict) -> None:
    """One-line errors for RecBole options of the wrong type (``--epochs=ten``) before RecBole trips on them."""
    for key, low in _INT_OPTIONS.items():
        value = final.get(key)
        if value is not None and (not is_int(value) or (low is not None and value < low)):
            bound = "" if low is None else f" >= {low}"
            raise ConfigError(f"{key} must be an integer{bound}, not {value!r}; e.g. --{key}=10")
    for key, low in _NUMBER_OPTIONS.items():
        value = final.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < low):
            raise ConfigError(f"{key} must be a number >= {low}, not {value!r}; e.g. --{key}=0.0001")
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, not {value!r}; e.g. --{key}=0.0001")
    topk = final.get("topk")
    ks = topk if isinstance(topk, list) else [topk]
    if not ks or not all(is_int(k) and k > 0 for k in ks):
        raise ConfigError(f"topk must be a positive integer or a list of them, not {topk!r}; e.g. --topk=[5,10]")
    if is_int(topk):
        final["topk"] = [topk]  # RecBole's evaluator indexes a list: topk 5 means [5]
    metrics = final.get("metrics") or []
    for metric in [metrics] if isinstance(metrics, str) else metrics:
        if str(metric).lower() not in metric_types:
            raise ConfigError(f"unknown metric {metric!r}; use RecBole's names, e.g. Recall, MRR, NDCG, Hit, "
                              f"Precision")
    _check_eval_mode(final.get("eval_args"))
    _check_valid_metric(final.get("valid_metric"), metrics, ks)


_MODE = re.compile(r"^(full|labeled|uni\d+|pop\d+)$")


def _check_eval_mode(eval_args) -> None:
    """RecBole's evaluation modes: full, labeled, uni<N> or pop<N> (for all splits, or per split)."""
    mode = (eval_args or {}).get("mode") if isinstance(eval_args, dict) else None
    for value in (mode.values() if isinstance(mode, dict) else [mode]):
        if value is not None and not _MODE.match(str(value)):
            raise ConfigError(f"eval_args mode {value!r} is not one of RecBole's modes; use full, labeled, uni100 or "
                              f"pop100 (e.g. --eval_args=\"{{'mode': 'full'}}\")")


def _check_valid_metric(valid_metric, metrics, ks) -> None:
    """The metric that selects the model must be one the evaluation computes (RecBole fails only after training)."""
    if not valid_metric:
        return
    names = [str(m).lower() for m in ([metrics] if isinstance(metrics, str) else metrics)]
    name, _, cut = str(valid_metric).lower().partition("@")
    computed = [f"{n}@{k}" for n in names for k in ks] + names
    if name not in names or (cut and (not cut.isdigit() or int(cut) not in ks)):
        raise ConfigError(f"valid_metric {valid_metric} is not computed by metrics {list(metrics)} at topk {list(ks)}; "
                          f"pick one of {', '.join(computed[:6])}{', ...' if len(computed) > 6 else ''} or add it")
