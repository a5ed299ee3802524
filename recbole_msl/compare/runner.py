"""Run every (seed, run) of a comparison in one process, one after another.

Runs share loaded data sets (one object per distinct data configuration, copied for
each run), so they see the same split; every record stores a fingerprint of its test
rows to prove it. A run that raises (bad override, out of memory) becomes a failure
record with its one-line error and the others go on. Finished records are read back
instead of being trained again, so an interrupted comparison resumes where it stopped; an
LLMMSL run keeps its checkpoints in a folder named by its signature, and continues from the
resume folder of its last finished epoch (so a stop loses at most one epoch, not the run).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import glob
import logging
import os
import platform
import shutil
import traceback

import torch

from .. import quick_start  # run() looked up when called, so a test can stand in for it
from ..errors import ConfigError, first_line
from ..files import write_atomic, write_json
from ..quick_start import RunInterrupted
from ..recbole_seam.config import Config
from ..recbole_seam.registry import is_plugin_model
from ..run_checks import check_run_config
from . import store
from .chart import write_chart
from .curve_adapters import curve_adapter
from .environment import run_environment
from .lock import comparison_lock
from .memory import PeakMemory
from .popularity import training_target_counts
from .report import build_report
from .report_format import to_csv, to_markdown
from .shared_assistant import assistant_record, shared_assistant, take_assistant
from .spec import ComparisonSpec, RunSpec
from .spent import LEDGER_FILE, SpentTime


def one_line_error(err: BaseException) -> str:
    """The first line of an error, prefixed with its type unless it is our own ConfigError."""
    text = first_line(err)
    return text if isinstance(err, ConfigError) or text == type(err).__name__ else f"{type(err).__name__}: {text}"


def _reset_logging() -> None:
    """RecBole's init_logger uses logging.basicConfig, which does nothing once handlers exist:
    drop them so that each run gets its own log file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def _log_file() -> str | None:
    return next((h.baseFilename for h in logging.getLogger().handlers if hasattr(h, "baseFilename")), None)


def free_memory() -> None:
    """Release the finished run's model before the next one, and hand freed heap back to the OS
    (glibc keeps it otherwise, and the next run's peak RSS would include it)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def llm_checkpoints(run: RunSpec, seed: int, signature: str, folder: str) -> tuple[str, str | None]:
    """An LLMMSL run's checkpoint folder (one per signature, so changed settings never resume old
    state) and the newest resume folder an interrupted attempt left there (None if none).
    A ``checkpoint_dir`` in the run's config is the parent instead of ``<comparison>/checkpoints``."""
    parent = run.config.get("checkpoint_dir") or os.path.join(folder, "checkpoints")
    checkpoint_dir = os.path.join(parent, f"{run.name}--seed{seed}--{signature}")
    attempts = sorted(glob.glob(os.path.join(checkpoint_dir, "*-last")), key=os.path.getmtime)
    return checkpoint_dir, (attempts[-1] if attempts else None)


def forget_attempts(checkpoint_dir: str) -> None:
    """After a finished run: drop its resume folders and time ledger (the best adapter stays), so a
    later run with the same settings, in another results folder, starts afresh."""
    for folder in glob.glob(os.path.join(checkpoint_dir, "*-last")):
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(checkpoint_dir, LEDGER_FILE))


def shared_training(run: RunSpec, seed: int, training_signature: str | None, finished: list[dict]) -> dict | None:
    """The finished record of this seed whose adapter this run evaluates instead of training: same settings but
    for decoding keys (:meth:`RunSpec.training_signature`), its adapter folder still there."""
    if training_signature is None:
        return None
    for record in finished:
        if (record.get("seed") == seed and record.get("status") == "ok" and record.get("run") != run.name
                and record.get("training_signature") == training_signature
                and os.path.isdir(str(record.get("saved_model_file")))):
            return record
    return None


def execute_run(run: RunSpec, dataset: str, seed: int, cmd_args: list[str], dataset_cache: dict,
                signature: str, folder: str | None = None, shared: dict | None = None,
                training_signature: str | None = None, assistant_from: dict | None = None) -> dict:
    """Train and test one run; always returns a record, never raises (except on Ctrl-C).

    With the comparison's ``folder``, an LLMMSL run continues from its last finished epoch of an
    interrupted attempt (a ``--checkpoint_dir`` on the command line turns this off: it wins).
    With ``shared`` (an earlier run's record, :func:`shared_training`) it evaluates that run's adapter; with
    ``assistant_from`` (:func:`~.shared_assistant.shared_assistant`) it loads that run's assistant."""
    record = {"run": run.name, "model": run.model, "dataset": dataset, "seed": seed, "signature": signature,
              "config_files": run.config_files, "config": run.config, "cmd_args": list(cmd_args),
              "started": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
              "environment": run_environment()}
    config = {**run.config, "seed": seed}
    own_dir = any(a.split("=")[0] == "--checkpoint_dir" for a in cmd_args)
    resumable = folder is not None and is_plugin_model(run.model) and not own_dir
    if resumable:
        config["checkpoint_dir"], config["resume"] = llm_checkpoints(run, seed, signature, folder)
        if config["resume"]:
            record["resumed_from"] = config["resume"]
    if is_plugin_model(run.model):
        record["training_signature"] = training_signature
    if shared is not None:
        config["trained_checkpoint"], config["resume"] = shared["saved_model_file"], None
        record["training_shared_with"] = shared["run"]
        if shared.get("curve_adapter"):
            record["curve_adapter"] = shared["curve_adapter"]
    if assistant_from is not None:
        take_assistant(config, record, assistant_from)
    _reset_logging()
    with PeakMemory() as peak, SpentTime(config["checkpoint_dir"] if resumable else None,
                                          config.get("resume")) as spent:
        try:
            result = quick_start.run(run.model, dataset, config_file_list=run.config_files, config_dict=config,
                                     saved=True, cmd_args=cmd_args, dataset_cache=dataset_cache, keep_test_hits=True)
        except (KeyboardInterrupt, RunInterrupted):
            raise
        except Exception as err:  # noqa: BLE001 - a failing run must not stop the others
            detail = "" if isinstance(err, ConfigError) else "\n" + traceback.format_exc()
            logging.getLogger().error("run %s (seed %s) failed: %s%s", run.name, seed, one_line_error(err), detail)
            record.update(status="failed", error=one_line_error(err))
            result = None
    # CPU time of this process (unaffected by pauses), summed over the attempts that continued the run;
    # work a cut attempt did after its last resume folder was redone, so it is counted apart as lost
    record["wall_s"], record["cpu_s"] = round(spent.final_wall_s, 2), round(spent.final_cpu_s, 2)
    record["attempts"] = spent.attempts
    if spent.attempts > 1:
        record["lost_wall_s"], record["lost_cpu_s"] = round(spent.lost_wall_s, 2), round(spent.lost_cpu_s, 2)
    if result is not None and resumable:
        forget_attempts(config["checkpoint_dir"])
    record["peak_rss_mb"], record["peak_cuda_mb"] = peak.rss_mb, peak.cuda_mb
    record["log_file"] = _log_file()
    if result is not None:
        timings = result["timings"]
        record.update(
            status="ok", error=None,
            valid={k: float(v) for k, v in dict(result["best_valid_result"] or {}).items()},
            test={k: float(v) for k, v in dict(result["test_result"] or {}).items()},
            train_s=round(timings["fit_s"] - timings.get("valid_s", 0.0), 2),
            valid_s=round(timings.get("valid_s", 0.0), 2), eval_s=round(timings["test_s"], 2),
            data_s=round(timings["data_s"], 2), model_load_s=round(timings["model_load_s"], 2),
            trainable_parameters=int(result["trainable_parameters"]), valid_metric=result.get("valid_metric"),
            assistant=(assistant_record(result["assistant"], assistant_from) if assistant_from is not None
                       else result.get("assistant")),
            saved_model_file=result.get("saved_model_file"), tau_trace=result.get("tau_trace"),
            test_hits=result.get("test_hits"))
    record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    del result
    free_memory()
    return record


def check_runs(spec: ComparisonSpec, cmd_args=()) -> None:
    """Every run's model, settings and backbone, checked before the first run trains (a typo in the last run's
    model would otherwise surface only after the LLM runs before it had trained): one line naming the run."""
    for run in spec.runs:
        seed = next((s for s in spec.seeds if run.runs_with(s)), None)
        if seed is None:
            continue
        try:  # unknown keys: the command line checks them first, for every run (cli._check_spec_keys)
            check_run_config(Config(model=run.model, dataset=spec.dataset, config_file_list=run.config_files,
                                    config_dict={**run.config, "seed": seed}, cmd_args=list(cmd_args),
                                    check_keys=False))
        except ConfigError as err:
            raise ConfigError(f"run {run.name}: {first_line(err)}; nothing was run") from None


def write_outputs(report: dict, folder: str) -> dict:
    """``<name>.md``, ``.csv``, ``.json`` and ``.png`` in the comparison's folder; returns their paths."""
    base = os.path.join(folder, report["comparison"])
    paths = {"markdown": base + ".md", "csv": base + ".csv", "json": base + ".json", "chart": base + ".png"}
    write_atomic(paths["markdown"], to_markdown(report))
    write_atomic(paths["csv"], to_csv(report))
    write_json(paths["json"], report)
    if not write_chart(report, paths["chart"]):
        paths.pop("chart")
    return paths


def run_comparison(spec: ComparisonSpec, cmd_args=(), results_dir: str | None = None, echo=print,
                   report_only: bool = False):
    """Run (or resume) ``spec``; write records and the report; return the report.

    Every run is checked first (:func:`check_runs`), and the comparison's folder is locked while it runs, so a
    second copy of the same comparison is refused instead of sharing its resume folders.
    ``report_only``: run nothing and report the runs finished so far with the current settings, the
    others as pending (safe while the comparison itself runs in another shell)."""
    cmd_args = list(cmd_args)
    folder = store.comparison_folder(results_dir or spec.results_dir, spec.name)
    if report_only:
        return _run_comparison(spec, cmd_args, folder, echo, report_only)
    check_runs(spec, cmd_args)
    with comparison_lock(folder, spec.name):
        return _run_comparison(spec, cmd_args, folder, echo, report_only)


def _target_counts(spec, cmd_args: list[str], records: list[dict], echo) -> dict | None:
    """Each item's count of training targets on the comparison's split, for the report's popularity breakdown
    (None when no run finished, or when the data cannot be read here: the report says so and goes without)."""
    if not any(r.get("status") == "ok" for r in records):
        return None
    try:
        return training_target_counts(spec, cmd_args)
    except Exception as err:  # noqa: BLE001 - the breakdown is optional; every other table stands without it
        echo(f"no breakdown by target popularity: the training split could not be read ({first_line(err)})")
        return None


def _run_comparison(spec: ComparisonSpec, cmd_args: list[str], folder: str, echo, report_only: bool) -> dict:
    dataset_cache: dict = {}
    scheduled = spec.scheduled()
    total = len(scheduled)
    pending, current = [], []
    for done, (seed, run) in enumerate(scheduled, 1):
        signature = run.signature(spec.dataset, seed, cmd_args)
        old = store.read_record(folder, run.name, seed)
        finished = bool(old) and old.get("status") == "ok" and old.get("signature") == signature
        adopted = None if finished else store.adopt_record(spec.adopt, run.name, seed, signature)
        if adopted is not None:
            store.write_record(folder, adopted)
            origin = adopted["adopted_from"]
            echo(f"[{done}/{total}] {run.name} seed {seed}: the same run as {origin['run']} of {origin['comparison']} "
                 f"(docs/results/): its record is taken, nothing runs")
            current.append(store.read_record(folder, run.name, seed))
            continue
        if finished:
            echo(f"[{done}/{total}] {run.name} seed {seed}: finished earlier, read back from "
                 f"{store.record_path(folder, run.name, seed)}")
            current.append(old)
            continue
        if report_only:
            echo(f"[{done}/{total}] {run.name} seed {seed}: not finished yet")
            pending.append((run.name, seed))
            continue
        why = "" if old is None else " (again: its settings changed)" if old.get("status") == "ok" \
            else " (again: it failed last time)"
        echo(f"[{done}/{total}] {run.name} seed {seed}: {run.model} on {spec.dataset}{why}")
        training = run.training_signature(spec.dataset, seed, cmd_args)
        shared = shared_training(run, seed, training, current)
        if shared is not None:
            echo(f"[{done}/{total}] {run.name} seed {seed}: differs from {shared['run']} in decoding only: "
                 f"evaluates its adapter (no training)")
        elif (shared := curve_adapter(run, seed, spec.dataset, cmd_args, spec.curve_adapters,
                                      os.path.dirname(folder))) is not None:
            echo(f"[{done}/{total}] {run.name} seed {seed}: trains exactly what {shared['run']} trained: "
                 f"evaluates that curve's final adapter (no training)")
        assistant_from = shared_assistant(spec, run, seed, cmd_args, current)
        if assistant_from is not None:
            echo(f"[{done}/{total}] {run.name} seed {seed}: loads the assistant {assistant_from['run']} trained "
                 f"(the same model, settings, split and seed) instead of training it again")
        record = execute_run(run, spec.dataset, seed, cmd_args, dataset_cache, signature, folder, shared,
                             training, assistant_from)
        store.write_record(folder, record)
        current.append(store.read_record(folder, run.name, seed))
        state = record["status"] if record["status"] == "ok" else f"failed: {record['error']}"
        echo(f"[{done}/{total}] {run.name} seed {seed}: {state} ({record['wall_s']:.0f} s)")
    report = build_report(spec, current, pending, _target_counts(spec, cmd_args, current, echo))
    paths = write_outputs(report, folder)
    report["files"] = paths
    return report
