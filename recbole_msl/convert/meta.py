"""Titles from an Amazon metadata file (one record per line), for the items the interactions mention only.

A category's metadata holds millions of products; most lines are skipped by a regular expression on
the id before any parsing, and the first title of an id that is not empty after cleaning wins (some 2018 lines are repeated).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable

from .reading import Lines


def parse_json(line: str) -> dict:
    return json.loads(line)


def parse_python_literal(line: str) -> dict:
    """The 2014 metadata is ``repr`` of Python dicts (single quotes); strict JSON lines are accepted too."""
    try:
        return json.loads(line)
    except ValueError:
        return ast.literal_eval(line)


def _id_pattern(key: str) -> re.Pattern:
    # "asin": "X" or 'asin': 'X'; inside a string value the quotes would be escaped, so only keys match
    return re.compile(rf"""(["'])({re.escape(key)})\1\s*:\s*(["'])([^"'\\]*)\3""")


def read_titles(lines: Lines, item_codes: dict[str, int], key: str, parse: Callable[[str], dict],
                clean: Callable[[object], str], fix: str) -> dict[int, str]:
    """Item code -> cleaned title ("" when the record has none) for the ids in ``item_codes``."""
    pattern = _id_pattern(key)
    titles: dict[int, str] = {}
    for line in lines:
        if not line.strip():
            continue
        ids = [m[3] for m in pattern.findall(line)]
        if ids and not any(i in item_codes and titles.get(item_codes[i]) in (None, "") for i in ids):
            continue  # not an item we need, or one whose title is already known
        try:
            record = parse(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
            raise lines.error(f"cannot parse the record ({type(err).__name__})", fix) from None
        if not isinstance(record, dict) or key not in record:
            raise lines.error(f"the record has no '{key}'", fix)
        code = item_codes.get(str(record[key]))
        if code is None:
            continue
        if titles.get(code) in (None, ""):
            titles[code] = clean(record.get("title"))
    return titles
