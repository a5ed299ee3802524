"""Amazon Reviews 2023 (Hou et al.): ``<Category>.jsonl(.gz)`` plus ``meta_<Category>.jsonl(.gz)``.

Reviews give ``user_id``, ``parent_asin``, ``rating`` and ``timestamp`` in milliseconds (recognised by their
magnitude, as a copy in seconds is, see ``--time_unit``; written as whole seconds, and rows within one second keep
their millisecond order); products are keyed by ``parent_asin``, as in the release's own benchmark files.
"""

from __future__ import annotations

from .interactions import SourceData
from .options import Option
from .reading import stem
from .reviews import read_amazon_json
from .time_units import TIME_UNIT
from .titles import clean_title

HELP = "Amazon Reviews 2023: <Category>.jsonl(.gz) + meta_<Category>.jsonl(.gz)"
INPUTS = [
    Option("reviews", "<Category>.jsonl(.gz): JSON lines with user_id, parent_asin, rating, timestamp (ms)",
           required=True, metavar="JSONL"),
    Option("meta", "meta_<Category>.jsonl(.gz): JSON lines with parent_asin and title", required=True,
           metavar="JSONL"),
    TIME_UNIT,
]
_GET = "download it from the Amazon Reviews 2023 release (review and meta files of the category)"


def category(opts: dict) -> str:
    return stem(opts["meta"]).removeprefix("meta_")


def read(opts: dict, clean=clean_title, progress=None) -> SourceData:
    """The category's interactions, and cleaned titles for the items they mention."""
    return read_amazon_json(opts, ("user_id", "parent_asin", "rating", "timestamp"),
                            "each line must be a 2023 review such as {\"user_id\": ..., \"parent_asin\": ..., "
                            "\"rating\": 5.0, \"timestamp\": 1588687728923} (2018 files: use amazon2018)",
                            _GET, clean, progress)
