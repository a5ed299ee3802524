"""Types of RecBole's own options, which RecBole never checks: a string where a number belongs stops the run with
one line before RecBole trips on it deep inside training."""

from __future__ import annotations

from recbole.evaluator import metric_types

from ..errors import ConfigError
from ..validate import is_int

# RecBole options that RecBole itself never type-checks (a string there fails deep inside training)
_INT_OPTIONS = {"epochs": 0, "train_batch_size": 1, "eval_batch_size": 1, "stopping_step": 0,
                "eval_step": None, "MAX_ITEM_LIST_LENGTH": 1, "seed": None}
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
    topk = final.get("topk")
    ks = topk if isinstance(topk, list) else [topk]
    if not ks or not all(is_int(k) and k > 0 for k in ks):
        raise ConfigError(f"topk must be a positive integer or a list of them, not {topk!r}; e.g. --topk=[5,10]")
    metrics = final.get("metrics") or []
    for metric in [metrics] if isinstance(metrics, str) else metrics:
        if str(metric).lower() not in metric_types:
            raise ConfigError(f"unknown metric {metric!r}; use RecBole's names, e.g. Recall, MRR, NDCG, Hit, "
                              f"Precision")
