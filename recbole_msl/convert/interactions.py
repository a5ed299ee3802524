"""Interactions as compact integer-coded arrays, built while streaming.

Each line adds 20 bytes (user and item code, time, rating) to growable C arrays; user and item ids
are mapped to codes through one dict each, whose insertion order is the code, so no per-line Python
object survives the line. A 2018 category file of tens of millions of reviews fits in a few GB.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

# Values pandas reads as missing even with dtype=str: RecBole would turn such an id into NaN.
_PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
              "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
_UNSAFE = re.compile(r'^"|\s')  # a leading quote starts a quoted field in pandas; whitespace splits fields


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be an id in RecBole's tab-separated files (None when it can)."""
    if token in _PANDAS_NA:
        return f"id {token!r} is empty or reads as missing in pandas"
    if _UNSAFE.search(token):
        return f"id {token!r} contains whitespace or starts with a quote"
    return None


class BadToken(ValueError):
    """An id that RecBole's files cannot hold; the source adds the file and line."""


class Codes:
    """String id -> dense int code, in order of first appearance."""

    def __init__(self):
        self.codes: dict[str, int] = {}

    def __call__(self, token: str) -> int:
        code = self.codes.get(token)
        if code is None:
            problem = token_problem(token)
            if problem:
                raise BadToken(problem)
            code = self.codes[token] = len(self.codes)
        return code

    def __len__(self) -> int:
        return len(self.codes)

    def tokens(self) -> list[str]:
        return list(self.codes)


@dataclass
class Interactions:
    """Rows of (user, item, time, rating); ``user``/``item`` index ``user_tokens``/``item_tokens``."""

    user: np.ndarray  # [n] int32
    item: np.ndarray  # [n] int32
    time: np.ndarray  # [n] float64, unix seconds
    rating: np.ndarray | None  # [n] float32, or None when the source has no ratings
    user_tokens: list[str]
    item_tokens: list[str]

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> Interactions:
        """The rows selected by a bool mask or an index array, in that order (token tables shared)."""
        return Interactions(self.user[index], self.item[index], self.time[index],
                            None if self.rating is None else self.rating[index], self.user_tokens, self.item_tokens)

    def counts(self) -> tuple[int, int, int]:
        """(users, items, interactions) present in the rows."""
        present = [int(np.count_nonzero(np.bincount(codes))) if len(codes) else 0 for codes in (self.user, self.item)]
        return present[0], present[1], len(self)

    def sorted_by_user_and_time(self) -> Interactions:
        """Rows grouped by user (first-appearance order), each user's in time order; ties keep input order."""
        return self.take(np.lexsort((self.time, self.user)))  # lexsort is stable; the last key is primary


class InteractionBuilder:
    """Append rows one line at a time; ``build`` turns the buffers into numpy arrays without copying twice."""

    def __init__(self, with_rating: bool = True):
        self.users, self.items = Codes(), Codes()
        self._user, self._item = array("i"), array("i")
        self._time = array("d")
        self._rating = array("f") if with_rating else None
        # input line of each row, kept sparse: from row _mark_rows[k] on, line = row + _mark_offsets[k]
        self._mark_rows, self._mark_offsets = array("q"), array("q")
        self._offset = None

    def add(self, user: str, item: str, time: float, rating: float = float("nan"), line: int | None = None) -> None:
        """One row; ``line`` is its input line (named in errors found later, such as mixed time units)."""
        if line is not None and line - len(self._user) != self._offset:  # only after a skipped or a long line
            self._offset = line - len(self._user)
            self._mark_rows.append(len(self._user))
            self._mark_offsets.append(self._offset)
        code = self.users.codes.get(user)  # the common case inline: an id seen before
        self._user.append(self.users(user) if code is None else code)
        code = self.items.codes.get(item)
        self._item.append(self.items(item) if code is None else code)
        self._time.append(time)
        if self._rating is not None:
            self._rating.append(rating)

    def __len__(self) -> int:
        return len(self._user)

    def line_of(self, row: int) -> int:
        """The input line of ``row`` (as given to ``add``; its 1-based number when lines were not given)."""
        k = bisect_right(self._mark_rows, row) - 1
        return row + (self._mark_offsets[k] if k >= 0 else 1)

    def build(self) -> Interactions:
        rating = None if self._rating is None else np.frombuffer(self._rating, dtype=np.float32)
        return Interactions(np.frombuffer(self._user, dtype=np.int32), np.frombuffer(self._item, dtype=np.int32),
                            np.frombuffer(self._time, dtype=np.float64), rating,
                            self.users.tokens(), self.items.tokens())


@dataclass
class SourceData:
    """What every non-benchmark source hands to the pipeline."""

    inter: Interactions
    titles: dict[int, str]  # item code -> cleaned title ("" when the item's record has none)
    lines: int  # input lines read (interactions and titles)
    time_unit: str = ""  # how the timestamps were read (seconds, milliseconds, ISO dates), for the report
