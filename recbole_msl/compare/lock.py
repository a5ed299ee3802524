"""One process per comparison folder: two copies of one comparison would share its resume folders and records.

``<results>/<comparison>/.lock`` is locked with ``flock`` for as long as the comparison runs, and holds the
holder's pid, start time, host and command. The kernel drops the lock when the process ends, however it
ends (``kill -9`` included), so a stale file never blocks; the file itself stays (deleting it would let a
third process lock a fresh file while a second still holds the old one).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import sys
from collections.abc import Iterator

from ..errors import ComparisonLockedError

LOCK_FILE = ".lock"


def _holder(path: str) -> str:
    """``process 1234 (started 2026-12-01 10:00:00 on host, `recbole-msl compare ...`)``, as far as known."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process (it has not written its pid yet)"
    details = [f"started {info['started']}" if info.get("started") else "",
               f"on {info['host']}" if info.get("host") and info["host"] != platform.node() else ""]
    details = ", ".join(d for d in details if d)
    return f"process {info['pid']}" + (f" ({details})" if details else "")


@contextlib.contextmanager
def comparison_lock(folder: str, name: str | None = None) -> Iterator[None]:
    """Hold the comparison folder's lock for the block; refuse at once (one line, naming the holder) when
    another process holds it. ``--report_only`` needs no lock: it only reads finished records."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            label = name or os.path.basename(os.path.normpath(folder))
            raise ComparisonLockedError(
                f"comparison {label} is already running in {_holder(path)}, in {os.path.abspath(folder)}; wait for "
                f"it, stop it (kill its pid), or pass another --results_dir (--report_only reads its finished "
                f"runs meanwhile)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started": datetime.datetime.now().isoformat(" ", "seconds"),
                                 "host": platform.node(), "command": " ".join(sys.argv)}) + "\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
