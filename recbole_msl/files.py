"""Files written whole or not at all: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import json
import os
import secrets
import tempfile

from .errors import disk_write_error


def write_atomic(path: str, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` so that readers see the old file or the new one, never half;
    a full or unwritable disk is a one-line :class:`~recbole_msl.errors.DiskWriteError` naming ``path``."""
    try:
        _write_atomic(path, data)
    except OSError as err:
        error = disk_write_error(err, os.path.abspath(path), "write it to another folder", show_file=False)
        if error is None:
            raise
        raise error from None


def _write_atomic(path: str, data: str | bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file gets what open() would give it
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str, data) -> None:
    write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def unique_path(path: str) -> str:
    """``path`` with a random 6-hex tag before its extension, unused so far: runs started in the same
    second (a job array) never write into each other's checkpoints."""
    base, ext = os.path.splitext(path)
    while True:
        candidate = f"{base}-{secrets.token_hex(3)}{ext}"
        if not os.path.exists(candidate) and not os.path.exists(candidate + "-last"):
            return candidate


def run_path(config, path: str) -> str:
    """RecBole's checkpoint path (``<dir>/<model>-<date><ext>``) named by the run's ``<date>-<tag>`` stem, which
    :func:`recbole_msl.quick_start.run` chooses unused and shares with the run's log and tensorboard folder
    (``config.run_stem``); without one (a trainer built elsewhere), made unique by a tag of its own."""
    stem = getattr(config, "run_stem", None)
    if stem:
        folder, name = os.path.split(path)
        candidate = os.path.join(folder, f"{config['model']}-{stem}{os.path.splitext(name)[1]}")
        if not os.path.exists(candidate) and not os.path.exists(candidate + "-last"):
            return candidate
    return unique_path(path)
