"""Checks of single option values, each failing with a one-line error that names the option."""

from __future__ import annotations

import math

from .errors import ConfigError


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value, key: str, allow_none: bool = False):
    """``value`` if it is an integer > 0 (or None when ``allow_none``); else a ConfigError."""
    if value is None and allow_none:
        return None
    if not is_int(value) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer{' or ~' if allow_none else ''}, not {value!r}")
    return value


def flag(value, key: str, default: bool) -> bool:
    """True/False (None gives ``default``); strings such as "no" are refused rather than read as True."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be True or False, not {value!r}")
    return value


def number(value, key: str, low: float | None = None, high: float | None = None, allow_inf: bool = False) -> float:
    """``value`` as a float within [low, high]; NaN is always refused, and so are infinities unless ``allow_inf``
    (a caller for which ``.inf`` means "no limit"), each with one line that names ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, not {value!r}")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ConfigError(f"{key} must be a finite number, not {value!r}; give a plain number such as "
                          f"{_example(low, high)}")
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f"be >= {low}" if high is None else f"be <= {high}" if low is None else f"lie in [{low}, {high}]"
        raise ConfigError(f"{key} must {bound}, not {value!r}")
    return float(value)


def _example(low: float | None, high: float | None) -> str:
    """A value inside [low, high] for an error message: 1, moved into the range."""
    example = 1.0 if low is None else max(low, 1.0)
    return f"{example if high is None else min(example, high):g}"
