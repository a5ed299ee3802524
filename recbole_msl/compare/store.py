"""The results folder of a comparison: one JSON record per (run, seed), written atomically.

A record is only ever complete or absent, so an interrupted comparison resumes by
reading the finished records back; a record whose signature no longer matches its
run (the file or an override changed) is run again.
"""

from __future__ import annotations

import json
import os

from ..files import write_json
from .portable import portable_paths


def comparison_folder(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, name)


def record_path(folder: str, run: str, seed: int) -> str:
    return os.path.join(folder, "runs", f"{run}--seed{seed}.json")


def read_json(path: str) -> dict | None:
    """A stored JSON object, or None if absent or unreadable (then the work is simply done again)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def read_record(folder: str, run: str, seed: int) -> dict | None:
    return read_json(record_path(folder, run, seed))


def write_record(folder: str, record: dict) -> str:

    path = record_path(folder, record["run"], record["seed"])
    write_json(path, portable_paths(record))  # paths relative to the project root: no machine folder in a record
    return path
