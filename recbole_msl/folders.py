"""Folders a command writes to: probing that one can be written, and undoing the folders a failed write made."""

from __future__ import annotations

import os
import tempfile


def try_writing(folder: str) -> None:
    """Create and drop a temporary file in ``folder``; raises the OSError that writing there would raise (a
    permission check alone says yes to root on a read-only mount)."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def missing_folders(path: str) -> list[str]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    while path and not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def remove_created(folders: list[str]) -> None:
    """Remove ``folders`` (as :func:`missing_folders` listed them before they were made), deepest first, each only
    while it is empty: what another process put there meanwhile stays."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            break
