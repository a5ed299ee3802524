"""The filters papers apply, as pure functions over the coded arrays, and their fixed order.

Order: rating, time window, untitled items, duplicates, k-core, last N. The window and the title
filter come before k-core so that the core is computed on what is kept; duplicates are removed before
it so that repeats do not count twice; last N comes after it and k-core is not applied again (cutting
histories would otherwise undo the core, or the core would undo the cut).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from ..errors import ConfigError
from .interactions import Interactions
from .options import UTC
from .report import Step


def rating_mask(rating: np.ndarray, min_rating: float) -> np.ndarray:
    return rating >= min_rating


def window_mask(time: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    """start <= t <= end, on the whole seconds that are written (both bounds included)."""
    time = np.floor(time)
    keep = np.ones(len(time), dtype=bool)
    if start is not None:
        keep &= time >= start
    if end is not None:
        keep &= time <= end
    return keep


def first_pair_mask(user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """True at the first row of each (user, item) pair, in row order."""
    pair = user.astype(np.int64) * (int(item.max(initial=0)) + 1) + item  # [n] one int per pair
    _, first = np.unique(pair, return_index=True)  # index of the first occurrence
    keep = np.zeros(len(user), dtype=bool)
    keep[first] = True
    return keep


def k_core_mask(user: np.ndarray, item: np.ndarray, user_k: int, item_k: int) -> np.ndarray:
    """Rows of the largest subset where every user has >= user_k and every item >= item_k rows."""
    index = np.arange(len(user))
    while len(index):
        u, i = user[index], item[index]
        user_ok = np.bincount(u)[u] >= user_k  # [rows] count of the row's user
        item_ok = np.bincount(i)[i] >= item_k
        ok = user_ok & item_ok
        if ok.all():
            break
        index = index[ok]
    keep = np.zeros(len(user), dtype=bool)
    keep[index] = True
    return keep


def last_n_mask(user: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` rows of each user; rows must be grouped by user, in time order."""
    rows = len(user)
    if not rows:
        return np.ones(0, dtype=bool)
    new_group = np.r_[True, user[1:] != user[:-1]]  # [rows] first row of a user's block
    group = np.cumsum(new_group) - 1  # [rows] block number
    ends = np.r_[np.flatnonzero(new_group)[1:], rows]  # [blocks] one past each block's last row
    return ends[group] - np.arange(rows) <= n


def _k_values(opts: dict) -> tuple[int, int]:
    return opts.get("user_k") or opts.get("k_core") or 0, opts.get("item_k") or opts.get("k_core") or 0


def apply_filters(inter: Interactions, has_title: np.ndarray, opts: dict, steps: list[Step]) -> Interactions:
    """Run the enabled filters in order on rows sorted by user and time; append one Step per filter.

    ``has_title`` is indexed by item code. Raises ConfigError as soon as a step leaves nothing.
    """
    user_k, item_k = _k_values(opts)
    plan = []
    if opts.get("min_rating") is not None:
        if inter.rating is None:
            raise ConfigError("--min_rating needs ratings, and this input has none; drop --min_rating or "
                              "name the rating column")
        plan.append(("min_rating", f">= {opts['min_rating']:g}", lambda d: rating_mask(d.rating, opts["min_rating"])))
    if opts.get("start") is not None or opts.get("end") is not None:
        plan.append(("time window", _window_note(opts), lambda d: window_mask(d.time, opts["start"], opts["end"])))
    if not opts.get("keep_untitled"):
        plan.append(("titles", "drop items without a usable title", lambda d: has_title[d.item]))
    if opts.get("dedup"):
        plan.append(("dedup", "earliest of repeated (user, item)", lambda d: first_pair_mask(d.user, d.item)))
    if user_k > 1 or item_k > 1:
        plan.append(("k-core", f"users >= {user_k}, items >= {item_k}",
                     lambda d: k_core_mask(d.user, d.item, user_k, item_k)))
    if opts.get("last_n"):
        plan.append(("last_n", f"last {opts['last_n']} per user", lambda d: last_n_mask(d.user, opts["last_n"])))
    for name, note, mask in plan:
        before = len(inter)
        inter = inter.take(mask(inter))
        steps.append(Step(name, *inter.counts(), note=note))
        if not len(inter):
            raise ConfigError(f"no interactions are left after the {name} filter ({note}; {before:,} before it); "
                              f"loosen that filter or check the input files")
    return inter


def _window_note(opts: dict) -> str:
    def day(t):
        return dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

    start = day(opts["start"]) if opts.get("start") is not None else "-inf"
    end = day(opts["end"]) if opts.get("end") is not None else "+inf"
    return f"{start} .. {end} UTC"
