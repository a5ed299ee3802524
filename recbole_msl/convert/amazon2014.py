"""Amazon Reviews 2014 (McAuley et al.): ``ratings_<Category>.csv`` plus ``meta_<Category>.json(.gz)``.

The ratings file is ``user,item,rating,timestamp`` without a header; the metadata is one Python
literal dict per line (single quotes), so it is read with ``ast.literal_eval``, never ``eval``.
"""

from __future__ import annotations

import csv

from .interactions import BadToken, InteractionBuilder, SourceData
from .meta import parse_python_literal, read_titles
from .options import Option
from .reading import Lines, require_file, stem
from .time_units import TIME_UNIT, build_in_seconds
from .titles import clean_title

HELP = "Amazon Reviews 2014: ratings_<Category>.csv + meta_<Category>.json(.gz)"
INPUTS = [
    Option("ratings", "ratings_<Category>.csv(.gz): user,item,rating,timestamp, no header", required=True,
           metavar="CSV"),
    Option("meta", "meta_<Category>.json(.gz): one Python-literal dict per line with 'asin' and 'title'",
           required=True, metavar="JSON"),
    TIME_UNIT,
]
_GET = "download it from the Amazon 2014 release (ratings only and metadata files of the category)"


def category(opts: dict) -> str:
    return stem(opts["meta"]).removeprefix("meta_")


def _read_ratings(lines: Lines) -> InteractionBuilder:
    fix = "each line must be user,item,rating,timestamp (the 2014 'ratings only' CSV)"
    builder = InteractionBuilder(with_rating=True)
    try:
        for row in csv.reader(lines):
            if not row:
                continue
            if len(row) != 4:
                raise lines.error(f"has {len(row)} fields, not 4", fix)
            try:
                rating, time = float(row[2]), float(row[3])
            except ValueError:
                if lines.lineno == 1:  # a header line some copies carry
                    continue
                raise lines.error(f"rating {row[2]!r} or timestamp {row[3]!r} is not a number", fix) from None
            try:
                builder.add(row[0].strip(), row[1].strip(), time, rating, lines.lineno)
            except BadToken as err:
                raise lines.error(str(err), "ids must be plain tokens") from None
    except csv.Error as err:
        raise lines.error(f"is not valid CSV ({err})", fix) from None
    return builder


def read(opts: dict, clean=clean_title, progress=None) -> SourceData:
    """The category's interactions, and cleaned titles for the items they mention."""
    ratings = require_file(opts["ratings"], "ratings file", _GET)
    meta = require_file(opts["meta"], "metadata file", _GET)
    rating_lines = Lines(ratings, progress)
    builder = _read_ratings(rating_lines)
    inter, unit = build_in_seconds(builder, opts["time_unit"], ratings, "timestamp")
    meta_lines = Lines(meta, progress)
    titles = read_titles(meta_lines, builder.items.codes, "asin", parse_python_literal, clean,
                         "each line must be a dict literal such as {'asin': '0000031852', 'title': '...'}")
    return SourceData(inter, titles, rating_lines.lineno + meta_lines.lineno, unit)
