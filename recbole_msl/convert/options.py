"""Every option declared once: the command line is built from these and the Python API checks against them.

Values are checked here, before any file is opened, so a typo in ``--k_core`` costs nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

UTC = dt.timezone.utc  # noqa: UP017 (datetime.UTC needs Python 3.11; we support 3.10)


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    kind: str = "str"  # str, int, float, time, flag, sep, choice (one of ``choices``)
    default: Any = None
    required: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


def _positive_int(name, value, low=1):
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"--{name} must be an integer >= {low}, not {value!r}; e.g. --{name}=5")
    return value


def _number(name, value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} must be a number, not {value!r}; e.g. --{name}=4") from None
    return _finite(name, number, value, "4")


def _finite(name: str, number: float, given, example: str) -> float:
    """``number`` unless it is NaN or infinite (``nan`` compares false with everything, so a filter would keep
    nothing, or everything, silently)."""
    if not math.isfinite(number):
        raise ConfigError(f"--{name} must be a finite number, not {given!r}; e.g. --{name}={example}")
    return number


def parse_time(name: str, value, end: bool = False) -> float:
    """Unix seconds from ``YYYY-MM-DD`` (UTC; for an end, the end of that day) or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(name, float(value), value, "2018-01-01")
    if isinstance(value, dt.date):
        value = value.isoformat()
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return _finite(name, seconds, value, "2018-01-01")
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"--{name} {value!r} is neither a date YYYY-MM-DD nor unix seconds; "
                          f"e.g. --{name}=2018-01-01") from None
    return day.timestamp() + (86400 - 1 if end else 0)


def parse_sep(name: str, value) -> str | None:
    if value is None:
        return None
    text = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}.get(value, value)
    if len(text) != 1:
        raise ConfigError(f"--{name} must be one character (or tab, comma, semicolon, pipe), not {value!r}")
    return text


def _check(option: Option, value):
    if value is None:
        return None
    if option.kind == "int":
        return _positive_int(option.name, value)
    if option.kind == "float":
        return _number(option.name, value)
    if option.kind == "time":
        return parse_time(option.name, value, end=option.name == "end")
    if option.kind == "flag":
        return bool(value)
    if option.kind == "sep":
        return parse_sep(option.name, value)
    if option.kind == "choice":
        text = str(value).strip().lower()
        if text not in option.choices:
            raise ConfigError(f"--{option.name} must be {' or '.join(option.choices)}, not {value!r}; "
                              f"e.g. --{option.name}={option.choices[0]}")
        return text
    return str(value)


def resolve(source: str, declared: list[Option], given: dict) -> dict:
    """Defaults filled in, unknown names and missing required ones refused, values checked and typed."""
    names = {o.name: o for o in declared}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for source {source}; use one of: {', '.join(names)}")
    values = {}
    for option in declared:
        value = given.get(option.name, option.default)
        if option.required and value in (None, ""):
            raise ConfigError(f"source {source} needs --{option.name} ({option.help})")
        values[option.name] = _check(option, value)
    return values


OUTPUT = [
    Option("overwrite", "write into an existing output folder, replacing only the files a conversion writes "
           "(<name>.inter, .item, .yaml, ...); other files there stay", kind="flag", default=False),
    Option("keep_untitled", "keep items without a usable title (empty title; the YAML then sets "
           "item_text_fallback 'Item {item_id}') instead of dropping them with their interactions",
           kind="flag", default=False),
    Option("domain", "category name that picks the prompt wording (default: from the file names)",
           metavar="CATEGORY"),
    Option("domain_noun", "plural noun of the prompt, e.g. books (overrides the category's)", metavar="NOUN"),
    Option("domain_singular", "singular noun of the prompt, e.g. book (default: from the plural)", metavar="NOUN"),
    Option("domain_verb", "past participle of the prompt, e.g. read (overrides the category's)", metavar="VERB"),
    Option("progress", "print a line every million input lines to stderr", kind="flag", default=False),
]

FILTERS = [
    Option("min_rating", "1. keep interactions rated at least this", kind="float", metavar="R"),
    Option("start", "2. keep interactions at or after this time (YYYY-MM-DD, UTC, or unix seconds)", kind="time",
           metavar="TIME"),
    Option("end", "2. keep interactions at or before this time (YYYY-MM-DD includes that whole day, UTC)",
           kind="time", metavar="TIME"),
    Option("dedup", "4. keep only the earliest of repeated (user, item) pairs (after 3., dropping items "
           "without a usable title, unless --keep_untitled)", kind="flag", default=False),
    Option("k_core", "5. k-core: repeat until every user and item has at least N interactions", kind="int",
           metavar="N"),
    Option("user_k", "5. k-core threshold for users only (overrides --k_core for users)", kind="int", metavar="N"),
    Option("item_k", "5. k-core threshold for items only (overrides --k_core for items)", kind="int", metavar="N"),
    Option("last_n", "6. keep each user's last N interactions by time (after k-core, which is NOT applied "
           "again, so an item may end with fewer than k)", kind="int", metavar="N"),
]
