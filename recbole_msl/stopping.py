"""SIGTERM stops a run the way Ctrl-C does: at the next Python instruction, leaving a resumable state.

Why: ``kill``, ``timeout`` and job schedulers (SLURM at its time limit) send SIGTERM, whose default
kills the process without the "continue with ..." message; and a job started in the background by a
non-interactive shell (``nohup cmd &`` in a script) inherits SIGINT *ignored*, so Ctrl-C's signal never
reaches it. Raising ``KeyboardInterrupt`` on SIGTERM sends both through the same, tested path.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable

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


def quiet_on_broken_pipe(command: Callable[[], int]) -> int:
    """Run a command's body and flush its output; when the reader went away (``recbole-msl --help | head -1``)
    end quietly with 141 (128 + SIGPIPE, what a program stopped by the broken pipe returns) instead of a traceback
    or "Exception ignored ... BrokenPipeError" at exit. ``SystemExit`` (argparse's ``--help``) passes through."""
    try:
        try:
            code = command()
        except SystemExit:
            sys.stdout.flush()
            raise
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():  # another pipe broke (a socket, a worker): a real error
            raise
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's last flush at exit goes nowhere, quietly
        return 128 + signal.SIGPIPE


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on its writing end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False
