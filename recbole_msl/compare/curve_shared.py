"""Curve runs that differ from an earlier run of the comparison only in decoding keys (``eval_history``,
``num_beams``, an assistant, ...): they evaluate that run's final adapter instead of training the same adapter
again, so the pair differs in decoding alone, is tested on one training, and costs a validation, not a curve.

Such a run has one point: the source's last, measured on the adapter the source saved there (its own untrained
point is left out: the question is how to decode a trained adapter, and a validation costs as much as a
twentieth of a pass). Its record names the source (``training_shared_with``), the source's signature and
the point it shares (``shared_at``); it is measured again when either changes. Its trained point carries the
source's training CPU seconds (``training_cpu_s``): that is the training it stands on."""

from __future__ import annotations

import os

from recbole.utils import init_logger

from ..recbole_seam.build import build_run
from ..recbole_seam.config import Config
from . import store
from .curve_points import (
    PointLog,
    adapter_folder,
    curve_signature,
    curve_training_signature,
    measure_point,
)
from .curve_stats import training_cpu_seconds, validation_estimate
from .runner import free_memory


def training_source(run, seed: int, done: list[tuple], dataset: str, points: list[int], cmd_args: list[str],
                    folder: str) -> tuple | None:
    """The earlier finished curve run of this seed, as (run spec, record), whose training ``run`` shares (same
    settings but for decoding keys) and whose adapter is still saved (or whose decoding this run has measured
    already); None to train as usual. ``done``: the (run spec, record) pairs of the curves trained so far."""
    mine = curve_training_signature(run, dataset, seed, points, cmd_args)
    if mine is None:
        return None
    for other, record in done:
        if (other.name != run.name and record["seed"] == seed and not record.get("training_shared_with")
                and curve_training_signature(other, dataset, seed, points, cmd_args) == mine
                and (os.path.isdir(adapter_folder(folder, other.name, seed))
                     or shared_finished(_current_record(run, (other, record), dataset, seed, points, cmd_args,
                                                        folder)))):
            return other, record
    return None


def _current_record(run, source: tuple, dataset: str, seed: int, points: list[int], cmd_args: list[str],
                    folder: str) -> dict:
    """This run's stored record if it was measured on ``source``'s current training, else a fresh one."""
    source_run, source_record = source
    fresh = {"run": run.name, "model": run.model, "seed": seed,
             "signature": curve_signature(run, dataset, seed, points, cmd_args), "points": [],
             "training_shared_with": source_run.name, "source_signature": source_record["signature"],
             "shared_at": max(p["sequences"] for p in source_record["points"])}
    record = store.read_json(store.record_path(folder, f"curve-{run.name}", seed)) or {}
    keys = ("signature", "training_shared_with", "source_signature", "shared_at")
    return record if all(record.get(k) == fresh[k] for k in keys) else fresh


def shared_finished(record: dict) -> bool:
    """Whether a shared run has its one point: the source's last, decoded this run's way."""
    return record["shared_at"] in {p["sequences"] for p in record["points"]}


def shared_curve_run(run, source: tuple, dataset: str, seed: int, points: list[int], cmd_args: list[str],
                     folder: str, echo) -> dict:
    """Evaluate ``source``'s final adapter (a (run spec, record) from :func:`training_source`) with this run's
    decoding: one validation, recorded as this run's only point."""
    source_run, source_record = source
    record_path = store.record_path(folder, f"curve-{run.name}", seed)
    record = _current_record(run, source, dataset, seed, points, cmd_args, folder)
    shared_at = record["shared_at"]
    if shared_finished(record):
        echo(f"curve {run.name} seed {seed}: finished earlier (decodes {source_run.name}'s adapter), read back from "
             f"{record_path}")
        return record
    echo(f"curve {run.name} seed {seed}: differs from {source_run.name} only in decoding keys, so it evaluates "
         f"{source_run.name}'s adapter at {shared_at:,} sequences instead of training it again")
    config = Config(model=run.model, dataset=dataset, config_file_list=run.config_files, cmd_args=cmd_args,
                    config_dict={**run.config, "seed": seed, "resume": None})
    init_logger(config)
    built = build_run(config)
    train_data, valid_data, model, trainer = built.train_data, built.valid_data, built.model, built.trainer
    trainer.load_trained(train_data, adapter_folder(folder, source_run.name, seed))
    trainer.eval_collector.data_collect(train_data)
    PointLog(record, record_path, echo, seed).save(
        _shared_point(trainer, model, valid_data, source_run.name, source_record, shared_at))
    del model, trainer
    free_memory()
    return record


def _shared_point(trainer, model, valid_data, source_name: str, source_record: dict, shared_at: int) -> dict:
    """The source's last point measured with this run's decoding; its tau, epoch, trained sequences and training
    CPU seconds are the source's (the training it stands on)."""
    points = source_record["points"]
    index = next(i for i, p in enumerate(points) if p["sequences"] == shared_at)
    origin = points[index]
    point = measure_point(trainer, model, valid_data, shared_at, origin["epoch"])
    point.update(tau=origin["tau"], trained_in=source_name)
    if "trained_sequences" in origin:
        point["trained_sequences"] = origin["trained_sequences"]
    training = training_cpu_seconds(points, validation_estimate([source_record]))[index]
    if training is not None:
        point["training_cpu_s"] = training
        if origin.get("cpu_estimated_s"):
            point["training_cpu_estimated"] = True
    return point
