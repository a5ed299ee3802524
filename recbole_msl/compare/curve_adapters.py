"""A comparison run whose training is exactly a learning curve run's evaluates that curve's final adapter.

A curve run trains one learning-rate schedule to its last point, and its validations along the way do not change
what it trains (tests/test_curve_adapters.py checks the adapters bit for bit). So a comparison run with the same
settings, seed, data and number of epochs, validated only after its last epoch (its adapter is then its last one,
as the curve's is), would train that same adapter. With ``curve_adapters: [curve]`` in the comparison file it
evaluates the adapter the curve left in ``<results_dir>/<curve>/curves/`` instead of training it again; its record
names the curve run (``curve_adapter``) and the CPU seconds that training took. Without that folder, or when
anything differs, the run trains its own (the same result, at the full cost).
"""

from __future__ import annotations

import os

from ..model.options import decoding_keys
from ..recbole_seam.config import Config
from . import store
from .curve_points import adapter_folder, curve_signature
from .curve_schedule import trained_sequences
from .curve_stats import training_cpu_seconds
from .spec import load_spec

# keys that shape neither the adapter nor the data it is trained on: what is measured and on how many users
EVALUATION_KEYS = ("metrics", "topk", "valid_metric", "valid_metric_bigger", "eval_max_users", "eval_sample_users",
                   "eval_batch_size", "metric_decimal_place")
# the schedule: compared through the epochs each side trains (validation and early stopping are checked apart)
SCHEDULE_KEYS = ("epochs", "eval_step", "stopping_step")


def training_identity(run, dataset: str, seed: int, cmd_args: list[str], epochs: int) -> str:
    """What an adapter depends on: the run's settings without decoding, evaluation and schedule keys, plus the
    number of epochs of ``train_samples_per_epoch`` it trains (its learning-rate schedule)."""
    dropped = (*decoding_keys(), *EVALUATION_KEYS, *SCHEDULE_KEYS)
    return run.signature_without(dropped, dataset, seed, list(cmd_args) + [f"epochs={epochs}"])


def _resolved(run, dataset: str, seed: int, cmd_args: list[str]) -> Config:
    return Config(model=run.model, dataset=dataset, config_file_list=run.config_files,
                  config_dict={**run.config, "seed": seed}, cmd_args=list(cmd_args), check_keys=False)


def _trains_to_its_last_epoch(config) -> bool:
    """Validated only after the last epoch, so the model kept is the last one (as a curve's final adapter is)."""
    return config["epochs"] > 0 and config["eval_step"] >= config["epochs"]


def same_training_runs(run, seed: int, dataset: str, cmd_args: list[str], curves: list[str]):
    """Each (curve spec, curve run) among ``curves`` that trains, to its last point, exactly what ``run`` trains:
    what :func:`curve_adapter` may take, whether or not its folder is here."""
    if not curves or run.config.get("llm_weight") == 0:
        return
    config = _resolved(run, dataset, seed, cmd_args)
    if not _trains_to_its_last_epoch(config):
        return
    mine = training_identity(run, dataset, seed, cmd_args, config["epochs"])
    for name in curves:
        spec = load_spec(name)
        if spec.curve is None or spec.dataset != dataset or seed not in spec.seeds:
            continue
        for other in (r for r in spec.runs if r.model == run.model and r.runs_with(seed)):
            per_epoch = _resolved(other, dataset, seed, cmd_args)["train_samples_per_epoch"]
            trained = trained_sequences(max(spec.curve), other.cost)
            if (per_epoch and not trained % per_epoch
                    and training_identity(other, dataset, seed, cmd_args, trained // per_epoch) == mine):
                yield spec, other


def curve_adapter(run, seed: int, dataset: str, cmd_args: list[str], curves: list[str], results_dir: str) -> dict | None:
    """The final adapter of a finished run of one of ``curves`` (comparison names or YAML paths) that trained what
    ``run`` would train (:func:`same_training_runs`), as ``{"saved_model_file", "run", "curve_adapter"}`` for
    :func:`.runner.execute_run`; None when there is none here (the run then trains)."""
    for spec, other in same_training_runs(run, seed, dataset, cmd_args, curves):
        folder = store.comparison_folder(results_dir, spec.name)
        record = store.read_json(store.record_path(folder, f"curve-{other.name}", seed)) or {}
        adapter = adapter_folder(folder, other.name, seed)
        last = max(spec.curve)
        if (record.get("signature") != curve_signature(other, dataset, seed, list(spec.curve), cmd_args)
                or record.get("training_shared_with") or record.get("stopped") or not os.path.isdir(adapter)
                or last not in {p["sequences"] for p in record.get("points", [])}):
            continue
        points = sorted(record["points"], key=lambda p: p["sequences"])
        return {"saved_model_file": adapter, "run": f"{other.name} of {spec.name}",
                "curve_adapter": {"comparison": spec.name, "run": other.name, "seed": seed, "sequences": last,
                                  "signature": record["signature"],
                                  "training_cpu_s": training_cpu_seconds(points)[-1]}}
    return None
