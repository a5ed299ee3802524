"""The trainer's settings that make a training run what it is: a resumed run must share every one of them."""

from __future__ import annotations

from dataclasses import dataclass

from ..lm.options import option


@dataclass(frozen=True)
class TrainingSettings:
    """Config keys only (RecBole's Trainer reads most of them itself); :func:`recbole_msl.trainer.resume.fingerprint`
    compares them, with LLMMSL's own options marked ``resume``, between a run and the run it continues."""

    model: str = option("model", resume=True)
    dataset: str = option("dataset", resume=True)
    seed: int = option("seed", resume=True)
    epochs: int = option("epochs", resume=True)
    train_batch_size: int = option("train_batch_size", resume=True)
    micro_batch_size: int = option("micro_batch_size", resume=True)
    train_samples_per_epoch: int = option("train_samples_per_epoch", resume=True)
    learner: str = option("learner", resume=True)
    learning_rate: float = option("learning_rate", resume=True)
    weight_decay: float = option("weight_decay", resume=True)
    warmup_ratio: float = option("warmup_ratio", resume=True)
    clip_grad_norm: object = option("clip_grad_norm", resume=True)
    eval_step: int = option("eval_step", resume=True)
    stopping_step: int = option("stopping_step", resume=True)
    valid_metric: str = option("valid_metric", resume=True)
