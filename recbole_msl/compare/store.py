"""The results folder of a comparison: one JSON record per (run, seed), written atomically.

A record is only ever complete or absent, so an interrupted comparison resumes by
reading the finished records back; a record whose signature no longer matches its
run (the file or an override changed) is run again.
"""

from __future__ import annotations

import json
import os
import shutil

from ..files import write_json
from ..recbole_seam.property_files import PROPERTIES_DIR
from .portable import portable_paths

# the records of the shipped comparisons, committed in the repository (absent from an installed package)
PUBLISHED_RESULTS = os.path.join(os.path.dirname(PROPERTIES_DIR), "docs", "results")


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


def adopt_published_records(folder: str, name: str, echo=print) -> int:
    """For ``--report_only`` on a results folder without records: copy in the records of comparison ``name``
    committed under docs/results/, so the command the docs show works from a fresh clone; returns how many.
    A folder with any record of its own is left alone (never a mix of two origins)."""
    runs = os.path.join(folder, "runs")
    if os.path.isdir(runs) and any(n.endswith(".json") for n in os.listdir(runs)):
        return 0
    published = os.path.join(PUBLISHED_RESULTS, name, "runs")
    if not os.path.isdir(published):
        return 0
    names = sorted(n for n in os.listdir(published) if n.endswith(".json"))
    os.makedirs(runs, exist_ok=True)
    for n in names:
        shutil.copyfile(os.path.join(published, n), os.path.join(runs, n))
    echo(f"{folder} held no records: read the {len(names)} committed ones from "
         f"{os.path.relpath(published, os.path.dirname(PROPERTIES_DIR))} (copied there)")
    return len(names)


def adopt_record(names: list[str], run: str, seed: int, signature: str) -> dict | None:
    """A finished record of a published comparison in ``names`` (docs/results/<name>/runs/) with this seed and
    ``signature`` (the same model, data, settings and files, whatever the run was called there), renamed to ``run``
    and marked ``adopted_from``; None when none matches. A comparison's rows measured already are read, not rerun."""
    for name in names:
        published = os.path.join(PUBLISHED_RESULTS, name, "runs")
        for file in sorted(os.listdir(published)) if os.path.isdir(published) else []:
            record = read_json(os.path.join(published, file)) if file.endswith(".json") else None
            if (record and record.get("status") == "ok" and record.get("seed") == seed
                    and record.get("signature") == signature):
                return {**record, "run": run, "adopted_from": {"comparison": name, "run": record["run"]}}
    return None
