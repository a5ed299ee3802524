"""A user's training items as one chronological sequence, and its cut into chunks (``train_format: sequence``).

RecBole hands a sequential model its training part as windows: one row per target, with the (at most
``MAX_ITEM_LIST_LENGTH``) items before it. The sequence format trains on each user's items once, so the
windows are joined back into sequences here: a row extends its user's sequence when its history is that
sequence's most recent items; any other row (benchmark files whose windows do not chain) starts a sequence
of its own. Nothing but the training rows is read, so no validation or test item can enter a sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def user_sequences(users: Sequence[int], histories: Sequence[Sequence[int]], targets: Sequence[int],
                   width: int) -> list[tuple[int, list[int]]]:
    """Chronological item sequences of the training rows (``histories[i]`` oldest first, ``targets[i]`` next).

    Rows of a user are taken in the given order. A row whose history equals the end of its user's current
    sequence (the whole of it, or the window's last items once the sequence is longer than the window)
    extends it by the target; otherwise the row's history and target start a new sequence. ``width`` is the
    longest history a row can hold (``MAX_ITEM_LIST_LENGTH``). Every target is in exactly one sequence, after
    the items of its own history. Returns (user, sequence) pairs.
    """
    current: dict[int, list[int]] = {}  # user -> the sequence being extended
    out: list[tuple[int, list[int]]] = []
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
            out.append((user, seq))
    return out


def chunk_sequence(items: Sequence[int], max_items: int, min_history: int,
                   cost: Callable[[int], int] | None = None, budget: int | None = None) -> list[list[int]]:
    """Cut ``items`` into consecutive chunks of at most ``max_items`` items (and at most ``budget`` summed
    ``cost``), where the first ``min_history`` items of each chunk are context only and the rest are targets.

    Each chunk after the first starts ``min_history`` items before its first target, so every item after the
    sequence's first ``min_history`` is a target of exactly one chunk, with at least ``min_history`` earlier items
    beside it. A sequence of ``min_history`` items or fewer gives no chunk (it has no target).
    """
    if not 0 <= min_history < max_items:
        raise ValueError(f"need 0 <= min_history < max_items, not {min_history} and {max_items}")
    cost = cost or (lambda item: 0)
    chunks, start, n = [], 0, len(items)
    while start + min_history < n:
        end = start + min_history
        spent = sum(cost(i) for i in items[start:end])
        while end < n and end - start < max_items and (budget is None or spent + cost(items[end]) <= budget):
            spent += cost(items[end])
            end += 1
        if end == start + min_history:
            raise ValueError(f"item {items[end]} with {min_history} items of context exceeds the budget of {budget}")
        chunks.append(list(items[start:end]))
        start = end - min_history
    return chunks
