"""A user's training items as one chronological sequence, and its cut into chunks (``train_format: sequence``).

RecBole hands a sequential model its training part as windows: one row per target, with the (at most
``MAX_ITEM_LIST_LENGTH``) items before it. The sequence format trains on each user's items once, so the
windows are joined back into sequences here: a row extends its user's sequence when its history is that
sequence's most recent items; any other row (benchmark files whose windows do not chain) starts a sequence
of its own. Nothing but the training rows is read, so no validation or test item can enter a sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple


class UserSequence(NamedTuple):
    """A user's chained training items; the first ``context`` are the history of the row that started it, which
    no row of the split has as a target (benchmark windows begin with such a history), so they are context only."""

    user: int
    items: list[int]
    context: int


def user_sequences(users: Sequence[int], histories: Sequence[Sequence[int]], targets: Sequence[int],
                   width: int) -> list[UserSequence]:
    """Chronological item sequences of the training rows (``histories[i]`` oldest first, ``targets[i]`` next).

    Rows of a user are taken in the given order. A row whose history equals the end of its user's current
    sequence (the whole of it, or the window's last items once the sequence is longer than the window)
    extends it by the target; otherwise the row's history and target start a new sequence. ``width`` is the
    longest history a row holds (the split's window: :func:`window_width`). Every target is in exactly one
    sequence, after the items of its own history, and no other item of a sequence is after its ``context``.
    """
    current: dict[int, list[int]] = {}  # user -> the sequence being extended
    out: list[UserSequence] = []
    for user, history, target in zip(users, histories, targets):
        history = list(history)
        seq = current.get(user)
        chains = (seq is not None and 0 < len(history) <= len(seq) and seq[-len(history):] == history
                  and (len(history) == len(seq) or len(history) >= width))
        if chains:
            seq.append(int(target))
        else:
            seq = [int(i) for i in history] + [int(target)]
            current[user] = seq
            out.append(UserSequence(user, seq, len(history)))
    return out


def window_width(lengths: Sequence[int], max_length: int) -> int:
    """The longest history a training row holds: ``MAX_ITEM_LIST_LENGTH``, or less where the split's rows are
    shorter windows (a benchmark split cut at 10 items read with a length of 50 would otherwise chain nothing)."""
    return min(max_length, max(lengths, default=max_length))


class Chunk(list):
    """A chunk's item ids (a list), and how many of its first items are context only (the rest are targets)."""

    def __init__(self, items, context: int):
        super().__init__(items)
        self.context = context


def context_of(chunk: Sequence[int], default: int) -> int:
    """A chunk's context items: its own count for a :class:`Chunk`, else ``default`` (``sequence_min_history``)."""
    return chunk.context if isinstance(chunk, Chunk) else default


def chunk_sequence(items: Sequence[int], max_items: int, min_history: int,
                   cost: Callable[[int], int] | None = None, budget: int | None = None,
                   context: int = 0) -> list[Chunk]:
    """Cut ``items`` into consecutive chunks of at most ``max_items`` items (and at most ``budget`` summed
    ``cost``) whose targets are every item from ``max(context, min_history)`` on, each in exactly one chunk.

    A chunk's first items are context only: the first chunk starts at the sequence's start (or, when its context
    would not leave room for a target in ``max_items`` or ``budget``, as late as it must, keeping at least
    ``min_history`` items), every later one
    ``min_history`` items before its first target, so each target has at least ``min_history`` earlier items beside
    it. A sequence with no item past its context gives no chunk.
    """
    if not 0 <= min_history < max_items:
        raise ValueError(f"need 0 <= min_history < max_items, not {min_history} and {max_items}")
    cost = cost or (lambda item: 0)
    chunks, target, n = [], max(context, min_history), len(items)
    while target < n:
        start = target - min_history if chunks else max(0, target - (max_items - 1))
        spent = sum(cost(i) for i in items[start:target])
        while budget is not None and start < target - min_history and spent + cost(items[target]) > budget:
            spent -= cost(items[start])  # a long starting history keeps its latest items that fit beside a target
            start += 1
        end = target
        while end < n and end - start < max_items and (budget is None or spent + cost(items[end]) <= budget):
            spent += cost(items[end])
            end += 1
        if end == target:
            raise ValueError(f"item {items[end]} with {target - start} items of context exceeds the budget of {budget}")
        chunks.append(Chunk(items[start:end], target - start))
        target = end
    return chunks
