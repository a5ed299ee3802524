"""Output written whole or not at all: files go to a hidden staging folder next to the target, then renames.

A conversion that fails half way (bad line, full disk, Ctrl-C) leaves no ``<name>/`` folder behind. With
``--overwrite`` an existing folder keeps everything the converter does not write (a user's notes, plots): once
the new files are complete, each of the converter's files is renamed over its old copy, and those of its files
that this conversion does not write (another layout's ``<name>.train.inter``) are removed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from ..errors import ConfigError, disk_write_error
from ..folders import missing_folders, remove_created, try_writing

CHUNK = 100_000  # rows formatted per write
# every file a conversion writes into <out>/<name>/ is <name>.<one of these> (interactions or benchmark layout)
OWN_SUFFIXES = ("inter", "train.inter", "valid.inter", "test.inter", "item", "yaml", "convert.json")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"data set name {name!r} must be letters, digits, '.', '_' or '-' (RecBole uses it in "
                          f"file names); pass e.g. --name=amazon-books")
    return name


def check_target(out_dir: str, name: str, overwrite: bool) -> str:
    """``<out_dir>/<name>``, refused if it exists (unless ``overwrite``) or if it is not a folder, and when
    ``out_dir`` is a file or cannot be written (checked before any input is read)."""
    if not out_dir:
        raise ConfigError("no output folder given; pass --out=FOLDER (the data_path of the runs)")
    check_writable(out_dir)
    target = os.path.join(os.path.abspath(out_dir), name)
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise ConfigError(f"{target} exists and is not a folder; pick another --out or --name")
        if not overwrite:
            raise ConfigError(f"{target} already exists; pass --overwrite to replace it or pick another --name")
    return target


def check_writable(out_dir: str) -> None:
    """``--out`` is a folder, or can be made one, that this process can write to: tried with a temporary file in
    the deepest folder that exists (a permission check alone says yes to root on a read-only mount)."""
    folder = os.path.abspath(out_dir)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"--out {out_dir} is a file, not a folder; pass a folder (it is created if missing)")
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--out {out_dir} lies under {existing}, which is a file; pass a folder")
    try:
        try_writing(existing)
    except OSError as err:
        raise ConfigError(f"cannot write to --out {out_dir}: {existing} is not writable "
                          f"({err.strerror or type(err).__name__}); pass a folder you can write to") from None


def _swap_in(staging: str, target: str, parent: str) -> None:
    """Move ``staging`` to ``target``. Into an existing target only the converter's own files go, each renamed
    over its old copy (readers see the old file or the new one); its other files stay as they are."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    name = os.path.basename(target)
    new = sorted(os.listdir(staging))
    stale = [f"{name}.{suffix}" for suffix in OWN_SUFFIXES if f"{name}.{suffix}" not in new]
    for file in new:
        os.replace(os.path.join(staging, file), os.path.join(target, file))
    for file in stale:
        if os.path.isfile(os.path.join(target, file)):
            os.remove(os.path.join(target, file))
    os.rmdir(staging)


def _usual_permissions(folder: str) -> None:
    """Temporary files and folders are private (0600/0700); the finished data set gets the umask's modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


@contextmanager
def staged_folder(target: str, overwrite: bool) -> Iterator[str]:
    """Yield an empty staging folder; on success its files go to ``target``, on any error it is removed (a full
    or unwritable disk then raises a one-line :class:`~recbole_msl.errors.DiskWriteError`)."""
    parent = os.path.dirname(target)
    created = missing_folders(parent)
    staging = None
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.tmp-")
        yield staging
        _usual_permissions(staging)
        check_target(parent, os.path.basename(target), overwrite)  # it may have appeared meanwhile
        _swap_in(staging, target, parent)
    except BaseException as err:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        remove_created(created)  # only folders made here, and only if empty
        disk = disk_write_error(err, f"the converted files of {target}", "pass another --out",
                                show_file=False) if isinstance(err, OSError) else None
        if disk is None:
            raise
        raise disk from None


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
