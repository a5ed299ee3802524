"""Benchmark 5: wall time of the README's main command, split into data, model loading, training, evaluation.

The main command takes about 6 minutes on a 2-core CPU, so the suite does not run it by default:
  * ``--end-to-end`` runs it (``make run``'s ``recbole-msl train --model=LLMMSL --dataset=ml-100k
    --profile=cpu``, as ``python -m recbole_msl``), keeps its output in
    ``results/end_to_end.log`` and parses it;
  * ``--e2e-log FILE`` parses the output of a run made elsewhere;
  * otherwise the figures recorded by the last such run (``results/end_to_end.json``) are reported
    with their date.
The split comes from the JSON the command prints ("timings": data_s, model_load_s, fit_s, test_s)
and RecBole's per-epoch log lines ("epoch N training [time: ...]", "epoch N evaluating [time: ...]").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from .common import RESULTS_DIR, log, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_COMMAND = ["-m", "recbole_msl", "train", "--model=LLMMSL", "--dataset=ml-100k", "--profile=cpu"]


def _last_json_with(text: str, key: str) -> dict:
    """The last JSON object in ``text`` that has ``key`` (the command prints one at the end)."""
    decoder = json.JSONDecoder()
    for start in reversed([m.start() for m in re.finditer(r"\{", text)]):
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict) and key in obj:
            return obj
    raise ValueError(f"no JSON object with '{key}' in the output")


def _timings(text: str) -> dict:
    """The run's timings: from the result file the command names at the end of its summary
    ("everything (...): PATH"), or from a JSON object in the output (the command's format before 2026-12)."""
    named = re.findall(r"^everything \([^)]*\): (\S+\.result\.json)\s*$", text, flags=re.MULTILINE)
    for path in reversed(named):
        path = path if os.path.isabs(path) else os.path.join(ROOT, path)
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)["timings"]
    try:
        return _last_json_with(text, "timings")["timings"]
    except ValueError:
        raise ValueError("the output names no readable result file and holds no JSON with 'timings'") from None


def parse(text: str) -> dict:
    """Timings of one main-command run from its console output (and the result file it names)."""
    timings = _timings(text)
    train = [float(x) for x in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", text)]
    valid = [float(x) for x in re.findall(r"epoch \d+ evaluating \[time: ([\d.]+)s", text)]
    return {"timings": timings, "train_epoch_s": train, "valid_epoch_s": valid}


def run_main_command() -> tuple[str, float]:
    """Run the main command with this interpreter; return its output and wall seconds."""
    log("end to end: running the README main command (about 6 minutes on 2 cores) ...")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *MAIN_COMMAND], cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    with open(os.path.join(RESULTS_DIR, "end_to_end.log"), "w") as f:
        f.write(text)
    if proc.returncode:
        raise RuntimeError(f"main command failed (exit {proc.returncode}); see results/end_to_end.log")
    return text, wall


def run(quick: bool = False, execute: bool = False, log_file: str | None = None) -> dict:
    recorded = os.path.join(RESULTS_DIR, "end_to_end.json")
    if not execute and not log_file:
        if not os.path.isfile(recorded):
            raise FileNotFoundError("no recorded end-to-end run: use --end-to-end (or --e2e-log FILE)")
        with open(recorded) as f:
            figures = json.load(f)
        log(f"end to end: recorded run of {figures['machine']['date_utc']} (use --end-to-end to re-run)")
        return figures
    if execute:
        text, wall = run_main_command()
        source = "run by the suite"
    else:
        with open(log_file) as f:
            text = f.read()
        wall, source = None, f"parsed from {log_file}"
    figures = {"command": " ".join(["python", *MAIN_COMMAND]), "source": source, "wall_s": wall, **parse(text)}
    write_json("end_to_end", figures)
    return figures


def summary(figures: dict) -> list[tuple]:
    t = figures["timings"]
    rows = [("e2e data loading s", t["data_s"], None, None, "report", None),
            ("e2e model loading s", t["model_load_s"], None, None, "report", None),
            ("e2e fit s (train+valid)", t["fit_s"], None, None, "report", None)]
    if figures["train_epoch_s"]:
        rows.append(("e2e training s per epoch", sum(figures["train_epoch_s"]) / len(figures["train_epoch_s"]),
                     None, None, "report", None))
    if figures["valid_epoch_s"]:
        rows.append(("e2e validation s per epoch", sum(figures["valid_epoch_s"]) / len(figures["valid_epoch_s"]),
                     None, None, "report", None))
    rows.append(("e2e test s", t["test_s"], None, None, "report", None))
    if figures.get("wall_s"):
        rows.append(("e2e whole command s", figures["wall_s"], None, None, "report", None))
    return rows
