"""What the language-model side needs to know, as typed options (the model layer reads them from the config).

Each field's ``key`` metadata is the config key it comes from; ``resume`` marks the settings a resumed run must
share with the run it continues (:mod:`recbole_msl.trainer.resume` collects them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from ..errors import ConfigError
from ..validate import positive_int


def option(key: str, default=None, resume: bool = False, decoding: bool = False):
    """A dataclass field read from config key ``key``. ``resume``: a resumed run must share it; ``decoding``: it
    only changes how titles are ranked, so runs that differ in nothing else share one training."""
    return field(default=default, metadata={"key": key, "resume": resume, "decoding": decoding})


def _read(cls, values) -> dict:
    """``{field: values[key]}`` for the keys ``values`` (a RecBole Config or a dict) has, defaults otherwise."""
    found = {}
    for f in fields(cls):
        key = f.metadata["key"]
        if key in values and values[key] is not None:
            found[f.name] = values[key]
    return found


def resume_keys(*classes) -> list[str]:
    """The config keys of the fields marked ``resume`` in ``classes``, in field order."""
    return marked_keys("resume", *classes)


def marked_keys(mark: str, *classes) -> list[str]:
    """The config keys of the fields of ``classes`` whose metadata sets ``mark`` (resume, decoding), in field order."""
    return [f.metadata["key"] for cls in classes for f in fields(cls) if f.metadata.get(mark)]


@dataclass(frozen=True)
class BackboneOptions:
    llm_path: str | None = option("llm_path", resume=True)
    llm_dtype: str = option("llm_dtype", "auto", resume=True)
    llm_load_in_bits: int | None = option("llm_load_in_bits", resume=True)
    gguf_cache: bool = option("gguf_cache", True)
    gguf_cache_dir: str | None = option("gguf_cache_dir")
    trust_remote_code: bool = option("trust_remote_code", False)
    gradient_checkpointing: bool = option("gradient_checkpointing", False)
    show_progress: bool = option("show_progress", False)

    @classmethod
    def from_mapping(cls, values) -> BackboneOptions:
        found = _read(cls, values)
        trust = found.get("trust_remote_code", False)
        if trust is not True and trust is not False:  # only a literal True runs shipped code (1 == True: no `in`)
            raise ConfigError(f"trust_remote_code must be True or False, not {trust!r}; leave it False unless you "
                              f"trust the checkpoint's code")
        return cls(**found)


FINETUNE_MODES = ("lora", "full")


@dataclass(frozen=True)
class LoraOptions:
    r: int = option("lora_r", 8, resume=True)
    alpha: float = option("lora_alpha", 16, resume=True)
    dropout: float = option("lora_dropout", 0.05, resume=True)
    target_modules: tuple[str, ...] = option("lora_target_modules", ("q_proj", "v_proj"), resume=True)
    finetune: str = option("llm_finetune", "lora", resume=True)  # lora: the adapter only; full: every weight too

    @classmethod
    def from_mapping(cls, values) -> LoraOptions:
        """The flat ``lora_*`` keys, validated here, in one place."""
        found = _read(cls, values)
        r, alpha = found.get("r", cls.r), found.get("alpha", cls.alpha)
        dropout, targets = found.get("dropout", cls.dropout), found.get("target_modules", cls.target_modules)
        positive_int(r, "lora_r")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise ConfigError(f"lora_alpha must be a positive number, not {alpha!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), not {dropout!r}")
        if isinstance(targets, str):  # one name, peft's "all-linear", or the command line's list syntax "[a,b]"
            text = targets.strip()
            targets = ([t.strip() for t in text[1:-1].split(",") if t.strip()] if text.startswith("[")
                       and text.endswith("]") else [text])
        if not targets or not all(isinstance(t, str) for t in targets):
            raise ConfigError(f"lora_target_modules must be a list of module names, not {targets!r}")
        finetune = str(found.get("finetune", cls.finetune)).lower()
        if finetune not in FINETUNE_MODES:
            raise ConfigError(f"llm_finetune must be {' or '.join(FINETUNE_MODES)}, not {found.get('finetune')!r}")
        return cls(r=r, alpha=alpha, dropout=float(dropout), target_modules=tuple(targets), finetune=finetune)
