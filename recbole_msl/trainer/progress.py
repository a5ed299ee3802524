"""A progress line about once a minute through a long phase (an epoch's training, a ranking of users) when no bar
is shown (``show_progress`` False, or its default on a log file or pipe): the phase, the counts and the time left,
so a six-minute epoch is not six silent minutes."""

from __future__ import annotations

import time

from ..summary import duration


class ProgressLine:
    """``update(n)`` after each ``n`` done; logs ``phase: done of total unit in T, about L left`` at most once every
    ``every`` seconds, never for the last one (the phase's own end line follows)."""

    def __init__(self, logger, phase: str, total: int, unit: str, every: float = 60.0):
        self.logger, self.phase, self.total, self.unit, self.every = logger, phase, total, unit, every
        self.done = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < self.every or not 0 < self.done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed / self.done * (self.total - self.done)
        self.logger.info(f"{self.phase}: {self.done:,} of {self.total:,} {self.unit} in {duration(elapsed)}, "
                         f"about {duration(left)} left")
