"""Checks of a data set's atomic files before RecBole reads them: bad data stops the run with one line.

RecBole reads atomic files with pandas' CSV quoting, so a field that begins with a double quote
(a title such as ``"Til There Was You``) swallows the following lines or fails with a ParserError;
and it fills blank or non-numeric timestamps with the column's mean, which moves those
interactions elsewhere in the user's sequence and changes the valid and test targets. Both
are refused here, naming the file, the line and the fix.
"""

from __future__ import annotations

import os

import pandas as pd

from ..atomic_files import atomic_file, header, read_columns
from ..errors import ConfigError

TIME_SUFFIXES = ("inter",)


def _loaded_files(config) -> dict[str, list[str]]:
    """Atomic files RecBole will parse (suffix -> loaded columns) for the configured ``load_col``."""
    load_col = config["load_col"] or {}
    suffixes = {}
    for suffix, columns in load_col.items():
        if suffix == "inter" and config["benchmark_filename"]:
            for part in config["benchmark_filename"]:
                suffixes[f"{part}.inter"] = list(columns)
        else:
            suffixes[suffix] = list(columns)
    return suffixes


def check_atomic_files(config) -> None:
    """Refuse leading double quotes in the fields RecBole parses, and blank or non-numeric timestamps."""
    sep, encoding = config["field_separator"] or "\t", config["encoding"] or "utf-8"
    time_field = config["TIME_FIELD"]
    for suffix, columns in _loaded_files(config).items():
        path = atomic_file(config, suffix)
        if not os.path.isfile(path):
            continue  # RecBole reports missing files itself
        present = [c for c in columns if c in header(path, sep, encoding)]
        if not present:
            continue
        frame = read_columns(path, present, sep, encoding)
        for column in present:
            quoted = frame[column].str.startswith('"')
            if quoted.any():
                row = int(quoted.to_numpy().argmax())
                raise ConfigError(f"line {row + 2} of {path}: {column} begins with a double quote "
                                  f"({frame[column].iloc[row][:40]!r}), which RecBole's reader takes as CSV quoting "
                                  f"({int(quoted.sum())} such lines); remove {column} from load_col (LLMMSL reads "
                                  f"titles itself) or the leading quotes")
        if time_field in present and suffix.endswith(TIME_SUFFIXES):
            times = pd.to_numeric(frame[time_field].str.strip(), errors="coerce")
            bad = times.isna()
            if bad.any():
                row = int(bad.to_numpy().argmax())
                raise ConfigError(f"{int(bad.sum())} interactions in {path} have a blank or non-numeric {time_field} "
                                  f"(e.g. line {row + 2}: {frame[time_field].iloc[row]!r}); RecBole would fill in "
                                  f"the mean and move them in their user's sequence; fix or drop those lines")


def sequential_load_col(config) -> dict | None:
    """The ``load_col`` a time-ordered sequential split needs when the data set gives none of its own.

    RecBole's default for an unknown data set loads only user and item ids, so a time-ordered split
    later fails with ``[timestamp] is not exist in interaction``. Returns the extended ``load_col``
    when the ``.inter`` file has the time column, None when nothing needs to change; raises with the
    YAML block to add when the file has no time column.
    """
    uid, iid, time = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]
    load_col = config["load_col"] or {}
    inter = list(load_col.get("inter") or [])
    if config["benchmark_filename"] or time in inter:
        return None
    path = atomic_file(config, "inter")
    if not os.path.isfile(path):
        return None  # downloaded later, or RecBole reports it
    if time not in header(path, config["field_separator"] or "\t", config["encoding"] or "utf-8"):
        raise ConfigError(f"{path} has no {time} column, which the time-ordered split (eval_args order: TO) needs; "
                          f"add a {time}:float column, or split at random with eval_args: {{order: RO}} in your YAML")
    return {**load_col, "inter": list(dict.fromkeys([uid, iid, *inter, time]))}
