"""Timestamps in seconds or milliseconds, told apart by their magnitude, and written as unix seconds.

Unix seconds of any date from 1973 to 2286 lie between 1e8 and 1e10; milliseconds of any date after
1973-03-03 are above 1e11 (in seconds that would be the year 5138). So a column whose every value is
at least 1e11 is read as milliseconds and divided by 1000 (rows within one second keep their
millisecond order), and one whose every value is below it as seconds. A column with both is refused,
with example lines of each kind: divided or not, one part would land decades away from the other and
reorder each user's sequence. Values of 1e14 and more are neither (microseconds, nanoseconds) and are
refused too. ``--time_unit=s`` or ``--time_unit=ms`` skips the guess and reads every number in that unit;
ISO dates (generic CSVs) are always exact and are never divided.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..errors import ConfigError
from .interactions import InteractionBuilder, Interactions
from .options import Option

MS_FROM = 1e11  # 1973-03-03 in milliseconds; the year 5138 in seconds
TOO_LARGE = 1e14  # the year 5138 in milliseconds; 1973 in microseconds
UNITS = ("s", "ms")
EXAMPLES = 3  # line numbers named per kind in an error

TIME_UNIT = Option("time_unit", "unit of numeric timestamps: s or ms (default: told by the magnitudes, "
                   "every value >= 1e11 is ms; a file that mixes both is refused)", kind="choice",
                   choices=UNITS, metavar="{s,ms}")


def _lines(rows: np.ndarray, line_of: Callable[[int], int]) -> str:
    shown = [str(line_of(int(r))) for r in rows[:EXAMPLES]]
    return ", ".join(shown) + (", ..." if len(rows) > EXAMPLES else "")


def to_seconds(time: np.ndarray, unit: str | None, path: str, key: str, line_of: Callable[[int], int],
               exact: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Unix seconds for ``time`` (one value per row) and a few words on the unit read, for the report.

    ``unit`` is ``--time_unit`` (None: from the magnitudes); ``exact`` marks rows already in seconds whatever
    the unit (ISO dates); ``line_of`` maps a row to its input line for the errors, which name ``path`` and the
    column ``key``.
    """
    if not len(time):
        return time, ""
    finite = np.isfinite(time)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ConfigError(f"{path} line {line_of(row)}: '{key}' {float(time[row])!r} is not a finite number; "
                          f"fix the value (unix seconds or milliseconds)")
    numeric = np.ones(len(time), dtype=bool) if exact is None else ~exact
    n_numeric = int(np.count_nonzero(numeric))
    dates = " and ISO dates" if n_numeric < len(time) else ""
    if unit == "s":
        return time, f"seconds (--time_unit=s){dates}"
    if unit == "ms":
        return np.where(numeric, time / 1000, time), f"milliseconds (--time_unit=ms){dates}, written as unix seconds"
    if not n_numeric:
        return time, "ISO dates"
    size = np.abs(time)
    huge = np.flatnonzero(numeric & (size >= TOO_LARGE))
    if len(huge):
        raise ConfigError(f"{path} line {line_of(int(huge[0]))}: '{key}' {time[huge[0]]:.0f} is too large for "
                          f"unix seconds or milliseconds (microseconds? nanoseconds?); convert the column to "
                          f"seconds, or pass --time_unit=s to keep the values as they are")
    ms = numeric & (size >= MS_FROM)
    n_ms = int(np.count_nonzero(ms))
    if n_ms == 0:
        return time, f"seconds (every value < 1e11){dates}"
    if n_ms == n_numeric:
        return np.where(numeric, time / 1000, time), \
            f"milliseconds (every value >= 1e11){dates}, written as unix seconds"
    seconds = np.flatnonzero(numeric & ~ms)
    raise ConfigError(f"{path}: '{key}' mixes milliseconds and seconds: {n_ms:,} of {n_numeric:,} values are "
                      f">= 1e11, so milliseconds (lines {_lines(np.flatnonzero(ms), line_of)}), and {len(seconds):,} "
                      f"are below, so seconds (lines {_lines(seconds, line_of)}); fix those rows, or pass "
                      f"--time_unit=ms or --time_unit=s to read every value in one unit")


def build_in_seconds(builder: InteractionBuilder, unit: str | None, path: str, key: str,
                     exact: np.ndarray | None = None) -> tuple[Interactions, str]:
    """The builder's rows with their times in unix seconds (see :func:`to_seconds`), and the unit read."""
    inter = builder.build()
    seconds, read = to_seconds(inter.time, unit, path, key, builder.line_of, exact)
    return dataclasses.replace(inter, time=seconds), read
