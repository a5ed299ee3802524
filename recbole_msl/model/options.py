"""LLMMSL's own config keys, read and validated once, with one-line errors that name the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..lm.options import BackboneOptions, LoraOptions, marked_keys, option
from ..lm.prompt import TRAIN_FORMATS
from ..validate import flag, number, positive_int
from .decoders import DECODERS
from .objectives import OBJECTIVES

# metrics that need a score for every item; beam search scores only the items it reaches
FULL_RANKING_METRICS = {"auc", "gauc", "logloss", "mae", "rmse"}


# options of the run (not the model) that only change what is shown after ranking
RUN_DECODING_KEYS = ("show_examples",)


def decoding_keys() -> tuple[str, ...]:
    """Config keys that only choose how titles are ranked (fields marked ``decoding``, and the run's own): runs of a
    comparison that differ in nothing else share one training."""
    return (*marked_keys("decoding", LLMMSLOptions), *RUN_DECODING_KEYS)


def check_titles_cover(topk: int, opts: LLMMSLOptions, asked: str, fix: str) -> None:
    """A decoder returns at most its capacity of titles (beam search: ``num_beams``), so a longer top-k list cannot
    be filled; ``fix`` names the option that raises the capacity as ``{option}``."""
    decoder = DECODERS[opts.decoder]
    capacity = decoder.capacity(opts)
    if topk <= capacity:
        return
    if decoder.capacity_key:
        raise ConfigError(f"{asked} exceeds {decoder.capacity_key} {capacity}; {fix.format(option=decoder.capacity_key)}")
    raise ConfigError(f"{asked} exceeds the {capacity} titles decoder {opts.decoder} returns; lower topk or choose "
                      f"another decoder ({', '.join(DECODERS)})")


@dataclass(kw_only=True)
class LLMMSLOptions:
    loss: str = option("llm_loss", resume=True)
    adaptive_tau: bool = option("tau", resume=True)
    tau_init: float = option("ats_tau_init", resume=True)
    ats_eta: float = option("ats_eta", resume=True)
    ats_alpha: float = option("ats_alpha", resume=True)
    ats_range: tuple[float, float] = option("ats_range", resume=True)
    num_beams: int = option("num_beams", decoding=True)
    length_penalty: float
    renormalize: bool
    history_length: int  # MAX_ITEM_LIST_LENGTH: a window's history, or a sequence chunk's most titles
    eval_history: int = option("eval_history", decoding=True)  # titles in a ranking prompt (the most recent)
    max_seq_length: int | None = option("max_seq_length", resume=True)
    decode_batch_size: int = option("decode_batch_size", decoding=True)
    eval_micro_batch_size: int
    share_prompt_prefix: bool = option("share_prompt_prefix", resume=True)  # it draws LoRA dropout's masks
    # a grid: each value ranks the validation users, the best is kept
    assistant_weights: tuple[float, ...] = option("assistant_weight", (0.0,), decoding=True)
    assistant_temperature: float = option("assistant_temperature", 1.0, decoding=True)
    llm_weight: float = option("llm_weight", 1.0, decoding=True)
    assistant: str | None = option("assistant", decoding=True)  # a RecBole model trained after the LLM
    assistant_checkpoint: str | None = option("assistant_checkpoint", decoding=True)
    assistant_config: object = option("assistant_config", decoding=True)
    decoder: str = option("decoder", "constrained_beam", decoding=True)
    train_format: str = option("train_format", "window", resume=True)
    sequence_min_history: int = option("sequence_min_history", 1, resume=True)
    backbone: BackboneOptions = field(default_factory=BackboneOptions)
    lora: LoraOptions = field(default_factory=LoraOptions)

    @property
    def has_assistant(self) -> bool:
        return bool(self.assistant or self.assistant_checkpoint)

    @property
    def trains_llm(self) -> bool:
        """False for the assistant alone through the trie (``llm_weight: 0``): no LLM term, nothing to train."""
        return self.llm_weight != 0

    @classmethod
    def from_config(cls, config) -> LLMMSLOptions:
        loss = str(config["llm_loss"]).lower()
        if loss not in OBJECTIVES:
            raise ConfigError(f"llm_loss must be {' or '.join(OBJECTIVES)}, not {config['llm_loss']!r}")
        tau = config["tau"]
        adaptive = isinstance(tau, str) and tau.lower() == "ats"
        if not adaptive:
            tau_value = number(config["tau"], "tau", low=1e-6)
        ats_range = config["ats_range"]
        if not (isinstance(ats_range, (list, tuple)) and len(ats_range) == 2
                and all(isinstance(x, (int, float)) and math.isfinite(x) for x in ats_range)
                and 0 < ats_range[0] <= ats_range[1]):
            raise ConfigError(f"ats_range must be [low, high] with 0 < low <= high, both finite, not {ats_range!r}")
        num_beams = positive_int(config["num_beams"], "num_beams")
        train_format, min_history, history_length, eval_history = _format_options(config)
        max_len = config["max_seq_length"]
        if max_len is not None:
            max_len = positive_int(config["max_seq_length"], "max_seq_length")
        weights, temperature, llm_weight = _assistant_options(config)
        decoder = str(config["decoder"] or "constrained_beam")
        if decoder not in DECODERS:
            raise ConfigError(f"decoder must be {' or '.join(DECODERS)}, not {config['decoder']!r}")
        opts = cls(
            backbone=BackboneOptions.from_mapping(config), lora=LoraOptions.from_mapping(config),
            decoder=decoder,
            assistant_weights=weights, assistant_temperature=temperature, llm_weight=llm_weight,
            assistant=config["assistant"] or None, assistant_checkpoint=config["assistant_checkpoint"] or None,
            assistant_config=config["assistant_config"],
            loss=loss,
            adaptive_tau=adaptive,
            tau_init=number(config["ats_tau_init"], "ats_tau_init", low=1e-6) if adaptive else tau_value,
            ats_eta=number(config["ats_eta"], "ats_eta", low=1e-9),
            ats_alpha=number(config["ats_alpha"], "ats_alpha", low=0.0, high=1.0),
            ats_range=(float(ats_range[0]), float(ats_range[1])),
            num_beams=num_beams,
            length_penalty=number(config["length_penalty"], "length_penalty"),
            renormalize=bool(config["cbs_renormalize"]),
            history_length=history_length, eval_history=eval_history,
            train_format=train_format, sequence_min_history=min_history,
            max_seq_length=max_len,
            decode_batch_size=positive_int(config["decode_batch_size"], "decode_batch_size"),
            eval_micro_batch_size=positive_int(config["eval_micro_batch_size"], "eval_micro_batch_size"),
            share_prompt_prefix=flag(config["share_prompt_prefix"], "share_prompt_prefix", True),
        )
        cutoffs = config["topk"] or [0]
        topk = max(cutoffs) if isinstance(cutoffs, (list, tuple)) else cutoffs
        check_titles_cover(topk, opts, f"topk {topk}", f"raise {{option}} to at least {topk} or lower topk")
        return opts


def _format_options(config) -> tuple[str, int, int, int]:
    """``train_format``, ``sequence_min_history`` (0 <= h < MAX_ITEM_LIST_LENGTH: a chunk holds a target),
    ``MAX_ITEM_LIST_LENGTH`` and ``eval_history`` (~ = MAX_ITEM_LIST_LENGTH, else at most it: RecBole keeps
    no more history than that)."""
    train_format = str(config["train_format"] or "window").lower()
    if train_format not in TRAIN_FORMATS:
        raise ConfigError(f"train_format must be {' or '.join(TRAIN_FORMATS)}, not {config['train_format']!r}")
    length = positive_int(config["MAX_ITEM_LIST_LENGTH"], "MAX_ITEM_LIST_LENGTH")
    raw = config["sequence_min_history"]
    min_history = 1 if raw is None else raw
    if isinstance(min_history, bool) or not isinstance(min_history, int) or not 0 <= min_history < length:
        raise ConfigError(f"sequence_min_history must be an integer from 0 to {length - 1} (below "
                          f"MAX_ITEM_LIST_LENGTH {length}, so a chunk holds a target), not {raw!r}")
    eval_history = config["eval_history"]
    eval_history = length if eval_history is None else positive_int(eval_history, "eval_history")
    if eval_history > length:
        raise ConfigError(f"eval_history {eval_history} exceeds MAX_ITEM_LIST_LENGTH {length}, the most history "
                          f"RecBole keeps; lower eval_history or raise MAX_ITEM_LIST_LENGTH")
    return train_format, min_history, length, eval_history


def _assistant_options(config) -> tuple[tuple[float, ...], float, float]:
    """``assistant_weight`` (a number or a non-empty list, each >= 0), ``assistant_temperature`` (> 0) and
    ``llm_weight`` (>= 0), checked together with whether an assistant is given at all."""
    raw = config["assistant_weight"]
    raw = 0.0 if raw is None else raw
    values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not values:
        raise ConfigError("assistant_weight is an empty list; give a number or a list such as [0, 0.5, 1, 2]")
    weights = tuple(number(v, "assistant_weight", low=0.0) for v in values)
    temperature = number(1.0 if config["assistant_temperature"] is None else config["assistant_temperature"],
                         "assistant_temperature", low=1e-6)
    llm_weight = number(1.0 if config["llm_weight"] is None else config["llm_weight"], "llm_weight", low=0.0)
    has_assistant = bool(config["assistant"] or config["assistant_checkpoint"])
    if not has_assistant and (any(w != 0 for w in weights) or llm_weight != 1):
        key = "llm_weight" if llm_weight != 1 else "assistant_weight"
        raise ConfigError(f"{key} needs an assistant; set assistant (e.g. --assistant=SASRec) or "
                          f"assistant_checkpoint")
    if has_assistant and llm_weight == 1 and not any(weights):
        raise ConfigError("assistant_weight is 0, so the assistant would not change the ranking; give assistant_weight "
                          "(a number, or a grid chosen on validation such as [0.5, 1, 2, 4, 8])")
    if llm_weight == 0 and 0 in weights:
        raise ConfigError("with llm_weight 0 an assistant_weight of 0 ranks nothing; give assistant_weight > 0")
    return weights, temperature, llm_weight
