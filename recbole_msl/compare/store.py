"""The results folder of a comparison: one JSON record per (run, seed), written atomically.

A record is only ever complete or absent, so an interrupted comparison resumes by
reading the finished records back; a record whose signature no longer matches its
run (the file or an override changed) is run again.
"""

from __future__ import annotations

import json
import os
import tempfile


def comparison_folder(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, name)


def record_path(folder: str, run: str, seed: int) -> str:
    return os.path.join(folder, "runs", f"{run}--seed{seed}.json")


def write_atomic(path: str, text: str, mode: str = "w") -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, data) -> None:
    write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def read_record(folder: str, run: str, seed: int) -> dict | None:
    """The stored record, or None if absent or unreadable (then the run is simply done again)."""
    path = record_path(folder, run, seed)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def write_record(folder: str, record: dict) -> str:
    path = record_path(folder, record["run"], record["seed"])
    write_json(path, record)
    return path
