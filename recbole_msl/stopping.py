"""SIGTERM stops a run the way Ctrl-C does: at the next Python instruction, leaving a resumable state.

Why: ``kill``, ``timeout`` and job schedulers (SLURM at its time limit) send SIGTERM, whose default
kills the process without the "continue with ..." message; and a job started in the background by a
non-interactive shell (``nohup cmd &`` in a script) inherits SIGINT *ignored*, so Ctrl-C's signal never
reaches it. Raising ``KeyboardInterrupt`` on SIGTERM sends both through the same, tested path.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_received: list[int] = []  # the signal that stopped the current command, for its exit code


@contextlib.contextmanager
def stop_on_sigterm():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        _received.append(signum)
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    _received.clear()
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code() -> int:
    """128 + the signal that stopped the command: 143 after SIGTERM, 130 after Ctrl-C (the shell's rule)."""
    return 128 + (_received[-1] if _received else signal.SIGINT)
