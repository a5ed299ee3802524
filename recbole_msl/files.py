"""Files written whole or not at all: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import json
import os
import secrets
import tempfile


def write_atomic(path: str, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` so that readers see the old file or the new one, never half."""
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
