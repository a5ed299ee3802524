"""Learning curves: validation metrics of LLM runs after given numbers of training sequences.

A comparison file with a ``curve: [256, 1024, 2048, 4096]`` key is run this way: each LLMMSL run
trains once for the largest number of sequences (its profile's ``train_samples_per_epoch`` per
epoch, one learning-rate schedule over the whole run) and is evaluated on the validation split
whenever the sequences seen reach a point; the other runs (SASRec, ...) train as usual and give a
horizontal line at their best validation score; a run that differs from an earlier one only in decoding keys
evaluates that run's final adapter instead (:mod:`.curve_shared`). A resume folder is written after every epoch and
each point's record as soon as it is measured, so an interrupted curve continues where it stopped.
Every point stores each evaluated user's ranked hits, so its standard error is computed per user
and runs are compared user by user: the report pairs each run with the reference run at every
point, and each run's last point with its first, and states how precise its last point is. Its
paired tests are one family: each p (a sign-flip permutation test) gets a Holm-adjusted p over all
of them, and "significant" follows the adjusted one. In a curve report "±" is always one standard
error over the validation users; each test is on one seed and so ignores training variance between seeds.
"""

from __future__ import annotations

import os
import shutil
from functools import partial

from recbole.utils import init_logger

from ..errors import ConfigError
from ..files import write_atomic, write_json
from ..recbole_seam.build import build_run
from ..recbole_seam.config import Config
from ..recbole_seam.registry import is_plugin_model
from . import store
from .curve_chart import cpu_chart, curve_chart
from .curve_markdown import curve_markdown
from .curve_points import (
    PointLog,
    adapter_folder,
    curve_signature,
    measure_point,
    untrained_point,
    untrained_signature,
)
from .curve_schedule import finished, flat_stop, stop_note, trained_sequences
from .curve_shared import shared_curve_run, shared_finished, training_source
from .curve_stats import (
    curve_precision,
    curve_tests,
    users_for_relative_se,  # noqa: F401 - imported from here by tests
)
from .curve_stats import point_stats as _point_stats  # noqa: F401 - tests rebuild a point's statistics with it
from .runner import execute_run, free_memory
from .stats import EXACT_MAX, FLIPS

_measure = measure_point  # the name tests script validation values through


def _epochs_for(points: list[int], per_epoch: int, cost: float | None = None) -> dict[int, int]:
    """The epoch after which each positive point is measured, as {epoch: point} (0, the untrained model, needs
    none); with a ``cost`` the run trains :func:`trained_sequences` of each point."""
    epochs = {}
    for p in (p for p in points if p > 0):
        trained = trained_sequences(p, cost)
        if trained % per_epoch:
            at_cost = "" if cost is None else f" (trains {trained} sequences at cost {cost:g})"
            raise ConfigError(f"curve point {p}{at_cost} is not a multiple of train_samples_per_epoch {per_epoch}; "
                              f"choose points (or a train_samples_per_epoch) that are")
        epochs[trained // per_epoch] = p
    return epochs


def curve_run(run, dataset: str, seed: int, points: list[int], cmd_args: list[str], folder: str, echo,
              untrained: dict | None = None, stop_from: int | None = None) -> dict:
    """Train one LLMMSL run to the last point, evaluating on validation at each point; resumable.

    The signature covers the positive points only: adding 0 (the untrained model) to a finished
    curve measures that point and keeps the trained ones. ``untrained`` maps
    :func:`untrained_signature` to a point 0 already measured by another run of the comparison,
    which this run then takes instead of measuring it again (the copy names the run it came from).
    ``stop_from``: the comparison's ``stop_when_flat_from`` (see :mod:`.curve_schedule`)."""
    record_path = store.record_path(folder, f"curve-{run.name}", seed)
    record = store.read_json(record_path) or {}
    signature = curve_signature(run, dataset, seed, points, cmd_args)
    last = adapter_folder(folder, run.name, seed)
    if record.get("signature") != signature:
        record = {"run": run.name, "model": run.model, "seed": seed, "signature": signature, "points": []}
        shutil.rmtree(last + "-last", ignore_errors=True)  # another setting's state (or its record is gone)
    if finished(record["points"], points, stop_from):
        echo(f"curve {run.name} seed {seed}: finished earlier, read back from {record_path}")
        return record
    base = Config(model=run.model, dataset=dataset, config_file_list=run.config_files,
                  config_dict={**run.config, "seed": seed}, cmd_args=cmd_args)
    per_epoch = base["train_samples_per_epoch"]
    if not per_epoch:
        raise ConfigError("a learning curve needs train_samples_per_epoch (sequences per epoch) in the run's config")
    epochs = _epochs_for(points, per_epoch, run.cost)
    # the resume folder belongs to this record's settings (a changed one is removed above), so a run stopped before
    # its first trained point continues too (a settings search's first point can be 8 epochs in)
    resume = last + "-last" if os.path.isdir(last + "-last") else None
    config = Config(model=run.model, dataset=dataset, config_file_list=run.config_files, cmd_args=cmd_args,
                    config_dict={**run.config, "seed": seed, "epochs": max(epochs), "resume": resume,
                                 "checkpoint_dir": os.path.dirname(last)})
    init_logger(config)
    built = build_run(config)
    train_data, valid_data, model, trainer = built.train_data, built.valid_data, built.model, built.trainer
    trainer.saved_model_file = last
    if not resume:
        record["points"] = [p for p in record["points"] if p["sequences"] == 0]
    log = PointLog(record, record_path, echo, seed)
    if 0 in points and 0 not in log.measured():
        log.take_untrained(run, (untrained or {}).get(untrained_signature(run, dataset, seed, cmd_args)),
                           partial(untrained_point, trainer, model, valid_data, train_data, _measure))
    trainer.start(train_data)
    for epoch in sorted(epochs):  # a point cut short by a stop is measured on resuming, from that epoch's state
        if epochs[epoch] in log.measured() or epoch < trainer.epochs_done:
            continue
        while trainer.epochs_done < epoch:  # epoch by epoch, the CPU time recorded after each: a stop loses at
            trainer.train_until(train_data, (trainer.epochs_done + 1) * per_epoch)  # most the epoch it cut short,
            log.save()  # which is trained again on resuming
        point = _measure(trainer, model, valid_data, epochs[epoch], epoch)
        if run.cost is not None:
            point["trained_sequences"] = epoch * per_epoch
        log.save(point)
        if flat_stop(record["points"], stop_from) == epochs[epoch]:
            record["stopped"] = {"at": epochs[epoch], "stop_when_flat_from": stop_from}
            log.save()
            echo(f"curve {run.name} seed {seed}: {stop_note(run.name, epochs[epoch], stop_from)}")
            break
    trainer.save_model()
    del model, trainer
    free_memory()
    return record


def line_run(run, dataset: str, seed: int, cmd_args: list[str], folder: str, dataset_cache: dict, echo) -> dict:
    """A model that gives a horizontal line: its best validation result after a normal run."""

    signature = run.signature(dataset, seed, cmd_args)
    old = store.read_record(folder, run.name, seed)
    if old and old.get("status") == "ok" and old.get("signature") == signature:
        echo(f"line {run.name} seed {seed}: finished earlier")
        return old
    record = execute_run(run, dataset, seed, cmd_args, dataset_cache, signature)
    store.write_record(folder, record)
    return record


def run_curve(spec, cmd_args=(), results_dir: str | None = None, echo=print) -> dict:
    """Run (or resume) a learning-curve comparison; write ``<name>.json``, ``.md`` and ``.png``."""
    cmd_args = list(cmd_args)
    folder = store.comparison_folder(results_dir or spec.results_dir, spec.name)
    curves, lines, cache, untrained, done = [], [], {}, {}, []
    for seed, run in spec.scheduled():
        if is_plugin_model(run.model):
            source = training_source(run, seed, done, spec.dataset, list(spec.curve), cmd_args, folder)
            if source is not None:
                curve = shared_curve_run(run, source, spec.dataset, seed, list(spec.curve), cmd_args, folder, echo)
            else:
                curve = curve_run(run, spec.dataset, seed, list(spec.curve), cmd_args, folder, echo, untrained,
                                  spec.stop_when_flat_from)
                done.append((run, curve))
            curves.append(curve)
            zero = next((p for p in curve["points"] if p["sequences"] == 0 and "measured_in" not in p), None)
            if zero is not None:
                untrained.setdefault(untrained_signature(run, spec.dataset, seed, cmd_args),
                                     {"run": run.name, "point": zero})
        else:
            lines.append({**line_run(run, spec.dataset, seed, cmd_args, folder, cache, echo), "run": run.name})
    return write_curve_report(spec, folder, curves, lines)


def write_curve_report(spec, folder: str, curves: list[dict], lines: list[dict], pending=()) -> dict:
    """The curve's report from its records (``curves``: curve records with their points' hits, ``lines``:
    line records with their ``run``), written as ``<name>.json``, ``.md`` and ``.png`` in ``folder``.
    ``pending``: (run, seed, last point measured or None) for each run without a finished record, named at the
    top of the Markdown; a run with points is drawn and tested where it has reached."""
    base = os.path.join(folder, spec.name)
    tests = curve_tests(curves, spec.reference)
    report = {"comparison": spec.name, "dataset": spec.dataset, "points": list(spec.curve),
              "curves": [{k: v for k, v in c.items() if k != "points"} | {
                  "points": [{k: v for k, v in p.items() if k != "valid_hits"} for p in c["points"]]}
                  for c in curves],
              "lines": [{"run": r["run"], "valid": r.get("valid"), "status": r.get("status")} for r in lines],
              "tests": tests, "precision": curve_precision(curves),
              "p_value": f"two-sided paired sign-flip permutation test of the mean difference (exact up to "
                         f"{EXACT_MAX} non-zero differences, else {FLIPS} seeded random flips, p = (count + 1) / "
                         f"(flips + 1)); bootstrap for the 95% interval only; paired t-test p beside it",
              "multiple_testing": {"method": "holm", "family_size": sum(1 for t in tests if "p" in t),
                                   "family": "every paired test in this report (all runs, points and metrics)"},
              "pending": [{"run": name, "seed": seed} | ({} if last is None else {"measured_to": last})
                          for name, seed, last in pending],
              "stopped": [{"run": c["run"], "seed": c["seed"], "at": stop, "stop_when_flat_from": spec.stop_when_flat_from}
                          for c in curves if (stop := flat_stop(c["points"], spec.stop_when_flat_from)) is not None]}
    markdown = curve_markdown(report)
    if pending:
        markdown = _partial_header(pending) + markdown
    write_json(base + ".json", report)
    write_atomic(base + ".md", markdown)
    curve_chart(curves, report["lines"], base + ".png", f"{spec.name}: {spec.dataset}")
    report["files"] = {"json": base + ".json", "markdown": base + ".md", "chart": base + ".png"}
    beside = [(name, (store.read_json(os.path.join(store.PUBLISHED_RESULTS, f"{name}.json")) or {}).get("curves"))
              for name in spec.beside]
    missing = [name for name, found in beside if not found]
    if missing:
        raise ConfigError(f"comparison {spec.name}: beside names {', '.join(missing)}, which has no published curve "
                          f"report in docs/results/; name a curve comparison whose report is committed there")
    if cpu_chart([(None, report["curves"]), *beside], base + "-cpu.png", f"{spec.name}: {spec.dataset}"):
        report["files"]["cpu_chart"] = base + "-cpu.png"
    return report


def _partial_header(pending) -> str:
    """The line that opens a partial report: the runs without a finished record, and how far each has come."""
    names = ", ".join(f"{name} (seed {seed}{'' if last is None else f', in progress: measured to {last:,}'})"
                      for name, seed, last in pending)
    return f"**Partial report: no finished record yet for {names}.**\n\n"


def curve_report_only(spec, cmd_args=(), results_dir: str | None = None, echo=print) -> dict:
    """Rewrite a curve's report from the records in its results folder, training nothing: a record counts
    when its signature matches the run's current settings; one without every point is pending, its points so far
    drawn and tested (a long curve is watched while it runs). This is how a published curve is re-tested after
    the statistics change (its records keep every validation user's hits)."""
    cmd_args = list(cmd_args)
    folder = store.comparison_folder(results_dir or spec.results_dir, spec.name)
    curves, lines, pending = [], [], []
    for seed, run in spec.scheduled():
        if is_plugin_model(run.model):
            record = store.read_json(store.record_path(folder, f"curve-{run.name}", seed))
            if (record and record["points"]
                    and record.get("signature") == curve_signature(run, spec.dataset, seed, spec.curve, cmd_args)):
                curves.append(record)
                if not (shared_finished(record) if record.get("training_shared_with")
                        else finished(record["points"], spec.curve, spec.stop_when_flat_from)):
                    last = max(p["sequences"] for p in record["points"])
                    echo(f"{run.name} seed {seed}: in progress, measured to {last:,} sequences")
                    pending.append((run.name, seed, last))
                continue
        else:
            record = store.read_record(folder, run.name, seed)
            if (record and record.get("status") == "ok"
                    and record.get("signature") == run.signature(spec.dataset, seed, cmd_args)):
                lines.append({**record, "run": run.name})
                continue
        echo(f"{run.name} seed {seed}: no finished record with the current settings")
        pending.append((run.name, seed, None))
    return write_curve_report(spec, folder, curves, lines, pending)
