"""Reading a data set's atomic files as raw text: the header's field names and the columns, unquoted.

RecBole reads atomic files with pandas' CSV quoting and its own types; these readers take every field
verbatim (no quoting, nothing read as missing), for the titles LLMMSL puts in prompts and for the
checks that run before RecBole reads a file. They know nothing of RecBole.
"""

from __future__ import annotations

import csv
import os

import pandas as pd


def atomic_file(config, suffix: str) -> str:
    """``<data_path>/<dataset>.<suffix>``."""
    return os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")


def header(path: str, sep: str, encoding: str) -> dict[str, str]:
    """``{field name: 'name:type'}`` of an atomic file's header line."""
    with open(path, encoding=encoding) as f:
        names = f.readline().rstrip("\r\n").split(sep)
    return {name.split(":")[0]: name for name in names}


def read_columns(path: str, columns: list[str], sep: str, encoding: str) -> pd.DataFrame:
    """The raw text of ``columns`` (no quoting, nothing read as missing), one row per line after the header."""
    names = header(path, sep, encoding)
    frame = pd.read_csv(path, sep=sep, usecols=[names[c] for c in columns], dtype=str, encoding=encoding,
                        engine="c" if len(sep) == 1 else "python", quoting=csv.QUOTE_NONE, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame
