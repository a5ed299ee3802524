"""Learning curves: validation metrics of LLM runs after given numbers of training sequences.

A comparison file with a ``curve: [256, 1024, 2048, 4096]`` key is run this way: each LLMMSL run
trains once for the largest number of sequences (its profile's ``train_samples_per_epoch`` per
epoch, one learning-rate schedule over the whole run) and is evaluated on the validation split
whenever the sequences seen reach a point; the other runs (SASRec, ...) train as usual and give a
horizontal line at their best validation score. A resume folder is written after every epoch and
each point's record as soon as it is measured, so an interrupted curve continues where it stopped.
Every point stores each evaluated user's ranked hits, so its standard error is computed per user.
"""

from __future__ import annotations

import io
import math
import os
import time

import numpy as np

from ..errors import ConfigError
from ..files import write_atomic, write_json
from ..trainer.capture import ranked_hits
from . import store
from .runner import execute_run, free_memory
from .user_metrics import per_user_metrics

CURVE_METRICS = ("ndcg@10", "hit@10")


def _point_stats(hits: dict, metrics=CURVE_METRICS) -> dict:
    """Mean and standard error over users of each metric, from the recorded ranked hits."""
    names = sorted({m.split("@")[0] for m in metrics})
    ks = sorted({int(m.split("@")[1]) for m in metrics})
    values = per_user_metrics(hits, names, ks)
    out = {}
    for metric in metrics:
        v = values[metric]
        out[metric] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0}
    out["users"] = len(hits["users"])
    return out


def _epochs_for(points: list[int], per_epoch: int) -> list[int]:
    for p in points:
        if p % per_epoch:
            raise ConfigError(f"curve point {p} is not a multiple of train_samples_per_epoch {per_epoch}; "
                              f"choose points that are")
    return [p // per_epoch for p in points]


def curve_run(run, dataset: str, seed: int, points: list[int], cmd_args: list[str], folder: str, echo) -> dict:
    """Train one LLMMSL run to the last point, evaluating on validation at each point; resumable."""
    from recbole.utils import init_logger, init_seed

    from ..config import Config
    from ..data import create_dataset, data_preparation
    from ..registry import get_model, get_trainer

    record_path = store.record_path(folder, f"curve-{run.name}", seed)
    record = store.read_json(record_path) or {}
    signature = run.signature(dataset, seed, cmd_args + [f"curve={points}"])
    if record.get("signature") != signature:
        record = {"run": run.name, "model": run.model, "seed": seed, "signature": signature, "points": []}
    done = {p["sequences"] for p in record["points"]}
    if set(points) <= done:
        echo(f"curve {run.name} seed {seed}: finished earlier, read back from {record_path}")
        return record
    base = Config(model=run.model, dataset=dataset, config_file_list=run.config_files,
                  config_dict={**run.config, "seed": seed}, cmd_args=cmd_args)
    per_epoch = base["train_samples_per_epoch"]
    if not per_epoch:
        raise ConfigError("a learning curve needs train_samples_per_epoch (sequences per epoch) in the run's config")
    epochs = _epochs_for(points, per_epoch)
    last = os.path.join(folder, "curves", f"{run.name}--seed{seed}")  # the run's checkpoints
    resume = last + "-last" if record["points"] and os.path.isdir(last + "-last") else None
    config = Config(model=run.model, dataset=dataset, config_file_list=run.config_files, cmd_args=cmd_args,
                    config_dict={**run.config, "seed": seed, "epochs": max(epochs), "resume": resume,
                                 "checkpoint_dir": os.path.dirname(last)})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(run.model)(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], run.model)(config, model)
    trainer.saved_model_file = last
    trainer.start(train_data)
    if not resume:
        record["points"] = []
    cpu, wall = time.process_time(), time.perf_counter()
    spent_cpu, spent_wall = record.get("cpu_s", 0.0), record.get("wall_s", 0.0)
    for epoch in range(trainer.start_epoch, max(epochs)):
        trainer._train_epoch(train_data, epoch)
        if epoch + 1 in epochs:
            sequences = (epoch + 1) * per_epoch
            valid = {k: float(v) for k, v in trainer.evaluate(valid_data, load_best_model=False).items()}
            hits = ranked_hits(valid_data, trainer.last_topk)
            record["points"].append({"sequences": sequences, "epoch": epoch + 1, "valid": valid,
                                     "stats": _point_stats(hits), "tau": float(model.tau), "valid_hits": hits,
                                     "cpu_s": spent_cpu + time.process_time() - cpu,
                                     "wall_s": spent_wall + time.perf_counter() - wall})
            stats = record["points"][-1]["stats"]
            echo(f"curve {run.name} seed {seed}: {sequences} sequences, valid NDCG@10 "
                 f"{stats['ndcg@10']['mean']:.4f} ± {stats['ndcg@10']['se']:.4f}, Hit@10 "
                 f"{stats['hit@10']['mean']:.4f} ± {stats['hit@10']['se']:.4f} ({stats['users']} users)")
        trainer._save_resume_checkpoint(epoch, train_data)
        record.update(cpu_s=spent_cpu + time.process_time() - cpu, wall_s=spent_wall + time.perf_counter() - wall)
        write_json(record_path, record)
    trainer._save_checkpoint(max(epochs) - 1, verbose=False)
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


def curve_chart(curves: list[dict], lines: list[dict], path: str, title: str) -> None:
    """NDCG@10 and Hit@10 against training sequences, shaded bands of one standard error, lines for baselines."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(5.2 * len(CURVE_METRICS), 4.0), dpi=120)
    for ax, metric in zip(axes, CURVE_METRICS):
        for curve in curves:
            xs = np.array([p["sequences"] for p in curve["points"]])
            means = np.array([p["stats"][metric]["mean"] for p in curve["points"]])
            ses = np.array([p["stats"][metric]["se"] for p in curve["points"]])
            (handle,) = ax.plot(xs, means, marker="o", label=curve["run"])
            ax.fill_between(xs, means - ses, means + ses, color=handle.get_color(), alpha=0.2)
        for line in lines:
            value = (line.get("valid") or {}).get(metric)
            if value is not None:
                ax.axhline(value, linestyle="--", color="grey", linewidth=1)
                ax.annotate(f"{line['run']} (best valid)", (0.01, value), xycoords=("axes fraction", "data"),
                            xytext=(0, 3), textcoords="offset points", fontsize=8, color="grey")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training sequences")
        ax.set_ylabel(f"valid {metric.replace('ndcg', 'NDCG').replace('hit', 'Hit')}")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    users = next((p["stats"]["users"] for c in curves for p in c["points"]), None)
    fig.suptitle(f"{title}" + (f" ({users} validation users, bands: ±1 standard error)" if users else ""), fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def curve_markdown(curves: list[dict], lines: list[dict]) -> str:
    rows = ["| run | sequences | valid NDCG@10 ± SE | valid Hit@10 ± SE | users | tau | CPU time so far |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for curve in curves:
        for p in curve["points"]:
            s = p["stats"]
            rows.append(f"| {curve['run']} | {p['sequences']:,} | {s['ndcg@10']['mean']:.4f} ± {s['ndcg@10']['se']:.4f} "
                        f"| {s['hit@10']['mean']:.4f} ± {s['hit@10']['se']:.4f} | {s['users']} | {p['tau']:.3f} "
                        f"| {p['cpu_s'] / 60:.0f} min |")
    for line in lines:
        valid = line.get("valid") or {}
        rows.append(f"| {line['run']} (best valid) | - | {valid.get('ndcg@10', float('nan')):.4f} "
                    f"| {valid.get('hit@10', float('nan')):.4f} | | | |")
    return "\n".join(rows) + "\n"


def run_curve(spec, cmd_args=(), results_dir: str | None = None, echo=print) -> dict:
    """Run (or resume) a learning-curve comparison; write ``<name>.json``, ``.md`` and ``.png``."""
    from ..registry import is_plugin_model

    cmd_args = list(cmd_args)
    folder = store.comparison_folder(results_dir or spec.results_dir, spec.name)
    curves, lines, cache = [], [], {}
    for seed in spec.seeds:
        for run in spec.runs:
            if not run.runs_with(seed):
                continue
            if is_plugin_model(run.model):
                curves.append(curve_run(run, spec.dataset, seed, list(spec.curve), cmd_args, folder, echo))
            else:
                lines.append({**line_run(run, spec.dataset, seed, cmd_args, folder, cache, echo), "run": run.name})
    base = os.path.join(folder, spec.name)
    report = {"comparison": spec.name, "dataset": spec.dataset, "points": list(spec.curve),
              "curves": [{k: v for k, v in c.items() if k != "points"} | {
                  "points": [{k: v for k, v in p.items() if k != "valid_hits"} for p in c["points"]]}
                  for c in curves],
              "lines": [{"run": r["run"], "valid": r.get("valid"), "status": r.get("status")} for r in lines]}
    write_json(base + ".json", report)
    write_atomic(base + ".md", curve_markdown(curves, report["lines"]))
    curve_chart(curves, report["lines"], base + ".png", f"{spec.name}: {spec.dataset}")
    report["files"] = {"json": base + ".json", "markdown": base + ".md", "chart": base + ".png"}
    return report
