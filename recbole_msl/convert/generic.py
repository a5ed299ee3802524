"""Any interactions table (CSV or TSV with a header) plus an items table with titles.

Column names are options, so most public data sets (MovieLens CSVs, Goodreads exports, in-house
logs) convert without a script; the separator follows the suffix (.csv, .tsv) unless given.
"""

from __future__ import annotations

import csv
import datetime as dt
import math

import numpy as np

from ..errors import ConfigError
from .interactions import BadToken, InteractionBuilder, Interactions, SourceData
from .options import UTC, Option
from .reading import Lines, format_suffix, require_file, stem
from .time_units import TIME_UNIT, build_in_seconds
from .titles import clean_title

HELP = "any CSV/TSV of interactions + a CSV/TSV of item titles (named columns)"
INPUTS = [
    Option("interactions", "CSV/TSV with a header row: one interaction per line", required=True, metavar="FILE"),
    Option("items", "CSV/TSV with a header row: item id and title columns", required=True, metavar="FILE"),
    Option("user_col", "user id column of --interactions", default="user_id", metavar="NAME"),
    Option("item_col", "item id column of --interactions", default="item_id", metavar="NAME"),
    Option("time_col", "time column of --interactions: unix seconds or milliseconds (see --time_unit) or ISO dates "
           "(UTC unless an offset is given)", default="timestamp", metavar="NAME"),
    Option("rating_col", "rating column of --interactions (needed for --min_rating)", metavar="NAME"),
    Option("item_id_col", "item id column of --items", default="item_id", metavar="NAME"),
    Option("title_col", "title column of --items", default="title", metavar="NAME"),
    Option("sep", "separator of --interactions (default: from the suffix, .csv comma, .tsv tab)", kind="sep",
           metavar="CHAR"),
    Option("items_sep", "separator of --items (default: from the suffix)", kind="sep", metavar="CHAR"),
    TIME_UNIT,
]
_SUFFIX_SEP = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".inter": "\t", ".item": "\t"}


def category(opts: dict) -> str:
    return stem(opts["interactions"])


def _separator(path: str, given: str | None, option: str) -> str:
    if given:
        return given
    sep = _SUFFIX_SEP.get(format_suffix(path))
    if sep is None:
        raise ConfigError(f"cannot tell the separator of {path} from its suffix; pass --{option} (e.g. tab or comma)")
    return sep


# separators a header may hold when another one was used to split it, and how --sep names them
_SEP_NAMES = {";": "semicolon", "\t": "tab", ",": "comma", "|": "pipe"}


def _other_separator(header: list[str], sep: str) -> str | None:
    """The separator a one-column header holds (``user_id;item_id;timestamp`` split on commas), if any."""
    if len(header) != 1:
        return None
    counts = {c: header[0].count(c) for c in _SEP_NAMES if c != sep}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def _columns(lines: Lines, header: list[str] | None, wanted: dict[str, str | None], sep: str,
             sep_option: str) -> dict[str, int]:
    """Option -> column index; header names may carry RecBole's ``:type`` suffix. A header that is one column
    holding another separator is named as such, with the separator option (not the column options) as the fix."""
    if header is None:
        raise ConfigError(f"{lines.path} is empty; it needs a header row and data rows")
    names = [h.strip().lstrip("\ufeff").split(":")[0] for h in header]
    found = {}
    for option, name in wanted.items():
        if name is None:
            continue
        if name not in names:
            other = _other_separator(header, sep)
            if other is not None:
                raise lines.error(f"has no column {name!r}: the header {header[0].strip()!r} is one column split "
                                  f"on {_SEP_NAMES.get(sep, repr(sep))}, and it holds {_SEP_NAMES[other]}s",
                                  f"pass --{sep_option}={_SEP_NAMES[other]} (the separator of this file)")
            raise lines.error(f"has no column {name!r} (columns: {', '.join(names)})",
                              f"pass --{option} with one of them")
        found[option] = names.index(name)
    return found


def _time(text: str) -> tuple[float, bool]:
    """A number as given (seconds or milliseconds), or unix seconds of an ISO date/time, and whether it was a date;
    ValueError otherwise."""
    try:
        value, date = float(text), False
    except ValueError:
        moment = dt.datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value, date = moment.timestamp(), True
    if not math.isfinite(value):
        raise ValueError(text)
    return value, date


def _read_interactions(opts: dict, progress) -> tuple[InteractionBuilder, Interactions, int, str]:
    path = require_file(opts["interactions"], "interactions file", "check --interactions")
    lines = Lines(path, progress)
    sep = _separator(path, opts["sep"], "sep")
    reader = csv.reader(lines, delimiter=sep)
    has_rating = opts["rating_col"] is not None
    builder = InteractionBuilder(with_rating=has_rating)
    dates = bytearray()  # per row: 1 where the time was an ISO date (already seconds, whatever the unit)
    try:
        cols = _columns(lines, next(reader, None), {"user_col": opts["user_col"], "item_col": opts["item_col"],
                                                    "time_col": opts["time_col"], "rating_col": opts["rating_col"]},
                        sep, "sep")
        u, i, t = cols["user_col"], cols["item_col"], cols["time_col"]
        r = cols.get("rating_col", 0)
        width = max(cols.values()) + 1
        for row in reader:
            if not row:
                continue
            if len(row) < width:
                raise lines.error(f"has {len(row)} fields, the header names {width} or more",
                                  "check the separator (--sep) and quoting")
            try:
                time, date = _time(row[t])
                rating = float(row[r]) if has_rating else float("nan")
            except ValueError:
                raise lines.error(f"time {row[t]!r} or rating is not a number (or an ISO date)",
                                  "fix the value or point --time_col/--rating_col at the right column") from None
            try:
                builder.add(row[u].strip(), row[i].strip(), time, rating, lines.lineno)
                dates.append(date)
            except BadToken as err:
                raise lines.error(str(err), "ids must be plain tokens") from None
    except csv.Error as err:
        raise lines.error(f"is not valid CSV ({err})", "check the separator and quoting") from None
    exact = np.frombuffer(bytes(dates), dtype=bool) if 1 in dates else None
    inter, unit = build_in_seconds(builder, opts["time_unit"], path, opts["time_col"], exact)
    return builder, inter, lines.lineno, unit


def _read_titles(opts: dict, item_codes: dict[str, int], clean, progress) -> tuple[dict[int, str], int]:
    path = require_file(opts["items"], "items file", "check --items")
    lines = Lines(path, progress)
    sep = _separator(path, opts["items_sep"], "items_sep")
    reader = csv.reader(lines, delimiter=sep)
    titles: dict[int, str] = {}
    try:
        cols = _columns(lines, next(reader, None), {"item_id_col": opts["item_id_col"],
                                                    "title_col": opts["title_col"]}, sep, "items_sep")
        i, t = cols["item_id_col"], cols["title_col"]
        for row in reader:
            if not row:
                continue
            if len(row) <= max(i, t):
                raise lines.error(f"has {len(row)} fields, fewer than the header", "check --items_sep and quoting")
            code = item_codes.get(row[i].strip())
            if code is not None and titles.get(code) in (None, ""):
                titles[code] = clean(row[t])
    except csv.Error as err:
        raise lines.error(f"is not valid CSV ({err})", "check the separator and quoting") from None
    return titles, lines.lineno


def read(opts: dict, clean=clean_title, progress=None) -> SourceData:
    """Interactions from the named columns, cleaned titles for the items they mention."""
    builder, inter, n_inter, unit = _read_interactions(opts, progress)
    titles, n_items = _read_titles(opts, builder.items.codes, clean, progress)
    return SourceData(inter, titles, n_inter + n_items, unit)
