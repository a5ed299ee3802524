"""CPU and wall time a run has spent, across the attempts that continue it.

A comparison's LLMMSL run may be stopped (Ctrl-C, a session that ends) and continued from its last
finished epoch; the time it reports must still be the whole run's. ``SpentTime`` keeps a small
ledger in the run's checkpoint folder, refreshed every ``period`` seconds and at the end, so an
attempt that is killed outright loses at most that much of its count.

Work a cut attempt did after its last resume folder is done again by the next attempt, so it is not
the run's cost: it moves to ``lost_cpu_s`` / ``lost_wall_s`` (the wall time between that folder and
the ledger's last write; its CPU share at the ledger's CPU/wall ratio, so an estimate), and so does
all of it when the next attempt starts afresh.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ..files import write_json

LEDGER_FILE = "spent.json"


def read_ledger(folder: str | None) -> dict:
    try:
        with open(os.path.join(folder, LEDGER_FILE)) as f:
            return json.load(f)
    except (TypeError, OSError, ValueError):
        return {}


def _redone_wall(folder: str, resume: str | None) -> float:
    """Wall seconds the last attempt ran after ``resume`` was written (all of them when None)."""
    if resume is None:
        return float("inf")
    try:
        return max(0.0, os.path.getmtime(os.path.join(folder, LEDGER_FILE)) - os.path.getmtime(resume))
    except OSError:
        return 0.0


class SpentTime:
    """``with SpentTime(folder, resume) as spent: ...``; then ``spent.cpu_s``, ``spent.wall_s`` (the
    kept work of all attempts so far), ``spent.lost_cpu_s``, ``spent.lost_wall_s`` and
    ``spent.attempts``. ``resume`` is the folder this attempt continues from (None: afresh).
    Without a folder it only measures this attempt."""

    def __init__(self, folder: str | None, resume: str | None = None, period: float = 30.0):
        self.folder, self.period = folder, period
        prior = read_ledger(folder)
        cpu, wall = float(prior.get("cpu_s", 0.0)), float(prior.get("wall_s", 0.0))
        cut_wall = min(wall, _redone_wall(folder, resume)) if prior else 0.0
        cut_cpu = cpu * cut_wall / wall if wall > 0 else 0.0
        self.prior_cpu, self.prior_wall = cpu - cut_cpu, wall - cut_wall
        self.lost_cpu_s = float(prior.get("lost_cpu_s", 0.0)) + cut_cpu
        self.lost_wall_s = float(prior.get("lost_wall_s", 0.0)) + cut_wall
        self.attempts = int(prior.get("attempts", 0)) + 1
        self._stop = threading.Event()
        self._thread = None

    @property
    def cpu_s(self) -> float:
        return self.prior_cpu + time.process_time() - self._cpu0

    @property
    def wall_s(self) -> float:
        return self.prior_wall + time.perf_counter() - self._wall0

    def _write(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        write_json(os.path.join(self.folder, LEDGER_FILE),
                   {"cpu_s": round(self.cpu_s, 2), "wall_s": round(self.wall_s, 2), "attempts": self.attempts,
                    "lost_cpu_s": round(self.lost_cpu_s, 2), "lost_wall_s": round(self.lost_wall_s, 2)})

    def _refresh(self) -> None:
        while not self._stop.wait(self.period):
            self._write()

    def __enter__(self):
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        if self.folder:
            self._thread = threading.Thread(target=self._refresh, name="spent-time", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self.final_cpu_s, self.final_wall_s = self.cpu_s, self.wall_s
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._write()
        return False
