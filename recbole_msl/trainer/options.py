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
    # what the model reads and is evaluated on: the prompt, the history, the titles, the evaluation users
    max_item_list_length: int = option("MAX_ITEM_LIST_LENGTH", resume=True)
    prompt_template: str = option("prompt_template", resume=True)
    prompt_instruction: str = option("prompt_instruction", resume=True)
    prompt_input: str = option("prompt_input", resume=True)
    item_text_field: str = option("item_text_field", resume=True)
    restore_title_articles: bool = option("restore_title_articles", resume=True)
    item_text_fallback: str = option("item_text_fallback", resume=True)
    eval_args: object = option("eval_args", resume=True)
    eval_max_users: int = option("eval_max_users", resume=True)
    eval_sample_users: object = option("eval_sample_users", resume=True)
    eval_sample_unit: str = option("eval_sample_unit", resume=True)
    eval_sample_seed: int = option("eval_sample_seed", resume=True)
    eval_exclude_seen: bool = option("eval_exclude_seen", resume=True)
