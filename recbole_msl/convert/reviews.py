"""Review files of one JSON object per line (Amazon 2018 and 2023): four fields kept, the rest dropped at once."""

from __future__ import annotations

import json
import json.scanner

from .interactions import BadToken, InteractionBuilder, SourceData
from .meta import parse_json, read_titles
from .reading import Lines, require_file
from .time_units import build_in_seconds

_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner json.loads ends in, minus 3 Python calls


def parse_json_line(line: str):
    """``json.loads(line)``, about a third faster on the millions of lines of a category file."""
    try:
        record, end = _SCAN(line, 0)
    except StopIteration:  # no value at the start (leading blank, empty line): let json.loads say why
        return json.loads(line)
    if line[end:].strip():
        return json.loads(line)  # trailing data: json.loads raises the precise error
    return record


def read_json_reviews(lines: Lines, keys: tuple[str, str, str, str], fix: str) -> InteractionBuilder:
    """Rows from ``{user: .., item: .., rating: .., time: ..}`` lines (``keys`` in that order); times as given,
    in the file's unit (see time_units.py)."""
    user_key, item_key, rating_key, time_key = keys
    builder = InteractionBuilder(with_rating=True)
    for line in lines:
        if not line.strip():
            continue
        try:
            record = parse_json_line(line)
            user, item, rating, time = record[user_key], record[item_key], record[rating_key], record[time_key]
        except (ValueError, TypeError, KeyError, IndexError):
            raise _record_error(lines, line, keys, fix) from None
        try:
            builder.add(str(user), str(item), float(time), float(rating), lines.lineno)
        except BadToken as err:
            raise lines.error(str(err), "ids must be plain tokens") from None
        except (TypeError, ValueError):
            raise lines.error(f"'{rating_key}' and '{time_key}' must be numbers", fix) from None
    return builder


def _record_error(lines: Lines, line: str, keys: tuple[str, ...], fix: str):
    """Why a line is not a review record: not JSON, not an object, or a missing key."""
    try:
        record = json.loads(line)
    except ValueError:
        return lines.error("is not a JSON object", fix)
    if not isinstance(record, dict):
        return lines.error("is not a JSON object", fix)
    missing = [k for k in keys if k not in record]
    return lines.error(f"has no '{missing[0]}' (it needs {', '.join(keys)})", fix)


def read_amazon_json(opts: dict, review_keys: tuple[str, str, str, str], review_fix: str,
                     get: str, clean, progress) -> SourceData:
    """A JSON-lines review file plus a JSON-lines metadata file (Amazon 2018 and 2023 differ only in their keys);
    the item key of the reviews is also the metadata's. Times in seconds or milliseconds (2023) are told apart by
    their magnitude, or read in ``--time_unit``."""
    reviews = require_file(opts["reviews"], "review file", get)
    meta = require_file(opts["meta"], "metadata file", get)
    review_lines = Lines(reviews, progress)
    builder = read_json_reviews(review_lines, review_keys, review_fix)
    inter, unit = build_in_seconds(builder, opts["time_unit"], reviews, review_keys[3])
    meta_lines = Lines(meta, progress)
    item_key = review_keys[1]
    titles = read_titles(meta_lines, builder.items.codes, item_key, parse_json, clean,
                         f"each line must be a JSON object with '{item_key}' and 'title'")
    return SourceData(inter, titles, review_lines.lineno + meta_lines.lineno, unit)
