"""Amazon Reviews 2018 (Ni et al.): ``<Category>.json(.gz)`` or ``<Category>_5.json.gz`` plus ``meta_<Category>.json.gz``.

Both are JSON lines; reviews give ``reviewerID``, ``asin``, ``overall`` and ``unixReviewTime`` (seconds; a copy
in milliseconds is recognised by its magnitude, see ``--time_unit``).
Metadata titles may hold HTML entities or markup, and some products appear on several lines.
"""

from __future__ import annotations

from .interactions import SourceData
from .options import Option
from .reading import stem
from .reviews import read_amazon_json
from .time_units import TIME_UNIT
from .titles import clean_title

HELP = "Amazon Reviews 2018: <Category>(_5).json(.gz) + meta_<Category>.json(.gz)"
INPUTS = [
    Option("reviews", "<Category>.json(.gz) or <Category>_5.json(.gz): JSON lines with reviewerID, asin, overall, "
           "unixReviewTime", required=True, metavar="JSON"),
    Option("meta", "meta_<Category>.json(.gz): JSON lines with asin and title", required=True, metavar="JSON"),
    TIME_UNIT,
]
_GET = "download it from the Amazon 2018 release (review file and metadata of the category)"


def category(opts: dict) -> str:
    return stem(opts["meta"]).removeprefix("meta_")


def read(opts: dict, clean=clean_title, progress=None) -> SourceData:
    """The category's interactions, and cleaned titles for the items they mention."""
    return read_amazon_json(opts, ("reviewerID", "asin", "overall", "unixReviewTime"),
                            "each line must be a 2018 review such as {\"reviewerID\": ..., \"asin\": ..., "
                            "\"overall\": 5.0, \"unixReviewTime\": 1252800000} (2023 files: use amazon2023)",
                            _GET, clean, progress)
