"""Output written whole or not at all: files go to a hidden staging folder next to the target, then one rename.

A conversion that fails half way (bad line, full disk, Ctrl-C) leaves no ``<name>/`` folder behind, and
an existing folder is only replaced (``--overwrite``) once the new one is complete.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from ..errors import ConfigError

CHUNK = 100_000  # rows formatted per write


def check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"data set name {name!r} must be letters, digits, '.', '_' or '-' (RecBole uses it in "
                          f"file names); pass e.g. --name=amazon-books")
    return name


def check_target(out_dir: str, name: str, overwrite: bool) -> str:
    """``<out_dir>/<name>``, refused if it exists (unless ``overwrite``) or if it is not a folder."""
    if not out_dir:
        raise ConfigError("no output folder given; pass --out=FOLDER (the data_path of the runs)")
    target = os.path.join(os.path.abspath(out_dir), name)
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise ConfigError(f"{target} exists and is not a folder; pick another --out or --name")
        if not overwrite:
            raise ConfigError(f"{target} already exists; pass --overwrite to replace it or pick another --name")
    return target


def _missing_folders(path: str) -> list[str]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _swap_in(staging: str, target: str, parent: str) -> None:
    """Move ``staging`` to ``target``; an existing target is moved aside first and removed last."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.old-")
    os.rmdir(old)  # a free name for the old folder
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)  # put the old folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _usual_permissions(folder: str) -> None:
    """Temporary files and folders are private (0600/0700); the finished data set gets the umask's modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


@contextmanager
def staged_folder(target: str, overwrite: bool) -> Iterator[str]:
    """Yield an empty staging folder; on success it becomes ``target``, on any error it is removed."""
    parent = os.path.dirname(target)
    created = _missing_folders(parent)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.tmp-")
    try:
        yield staging
        _usual_permissions(staging)
        check_target(parent, os.path.basename(target), overwrite)  # it may have appeared meanwhile
        _swap_in(staging, target, parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first; only folders made here, and only if empty
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise


def time_strings(time: np.ndarray) -> list[str]:
    """Whole unix seconds as text (fractions dropped: RecBole holds times as float32 anyway).

    Call it on chunks of rows: the list holds one string per row. The rows' order, not these
    values, keeps sub-second order (RecBole's time sort is stable).
    """
    return [str(t) for t in np.floor(time).astype(np.int64).tolist()]


def write_lines(path: str, header: str, lines: Iterable[str]) -> None:
    """A header and text lines (each ending in a newline), written in chunks; UTF-8, ``\\n`` endings."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(header + "\n")
        chunk = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= CHUNK:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
