"""Model and trainer lookup: the plugin first, then RecBole (as RecBole-GNN does), with the mixins every trainer gets."""

from __future__ import annotations

import importlib

import torch
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from ..errors import ConfigError
from ..evaluation.protocol import EvaluationProtocolMixin
from ..evaluation.records import EvaluationRecordMixin
from .compat import SafeCheckpointMixin

PLUGIN_MODELS = {"llmmsl": "LLMMSL"}


def is_plugin_model(model_name: str) -> bool:
    return str(model_name).lower() in PLUGIN_MODELS


def get_model(model_name: str):
    """Model class for a name: ours first, then every RecBole model (SASRec, GRU4Rec, ...)."""
    if is_plugin_model(model_name):
        module = importlib.import_module(f"recbole_msl.model.{model_name.lower()}")
        return getattr(module, PLUGIN_MODELS[model_name.lower()])
    hint = (f"unknown model '{model_name}'; use LLMMSL or a RecBole model name such as SASRec, GRU4Rec, "
            f"BERT4Rec (names are case-sensitive)")
    try:
        return _without_recbole_anomaly_mode(recbole_get_model, model_name)
    except (ValueError, AttributeError):
        raise ConfigError(hint) from None
    except ImportError as err:  # RecBole's search reaches exlib models, which need lightgbm/xgboost
        raise ConfigError(f"{hint}, or install {err.name} if you meant one of RecBole's exlib models") from None


def _without_recbole_anomaly_mode(lookup, model_name: str):
    """RecBole's SINE module calls ``torch.autograd.set_detect_anomaly(True)`` when imported, and the lookup imports
    every sequential model: autograd would then record a stack trace for each op of every later model in the
    process (on 2 cores a GRU4Rec step ran 3.7x and a 4-layer Llama step 1.3x slower: benchmarks/anomaly_mode.py).
    Anomaly mode only checks, so turning it back off leaves results unchanged."""
    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        return lookup(model_name)
    finally:
        torch.autograd.set_detect_anomaly(enabled, check_nan=check_nan)


def get_trainer(model_type, model_name: str):
    """Trainer class: ours for plugin models; RecBole's otherwise, with safe checkpoints, evaluation records and
    the plugin's evaluation protocol (:mod:`recbole_msl.evaluation.protocol`), so every model is ranked by one rule."""
    if is_plugin_model(model_name):
        # lazy: transformers and peft, which the LLM's trainer imports and a RecBole model's run does not need
        from ..trainer import LLMMSLTrainer

        return LLMMSLTrainer
    base = recbole_get_trainer(model_type, model_name)
    return type(f"Recorded{base.__name__}", (EvaluationRecordMixin, EvaluationProtocolMixin, SafeCheckpointMixin, base),
                {})
