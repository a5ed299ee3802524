"""Learning curves: validation metrics of LLM runs after given numbers of training sequences.

A comparison file with a ``curve: [256, 1024, 2048, 4096]`` key is run this way: each LLMMSL run
trains once for the largest number of sequences (its profile's ``train_samples_per_epoch`` per
epoch, one learning-rate schedule over the whole run) and is evaluated on the validation split
whenever the sequences seen reach a point; the other runs (SASRec, ...) train as usual and give a
horizontal line at their best validation score. A resume folder is written after every epoch and
each point's record as soon as it is measured, so an interrupted curve continues where it stopped.
Every point stores each evaluated user's ranked hits, so its standard error is computed per user
and runs are compared user by user: the report pairs each run with the reference run at every
point, and each run's last point with its first, and states how precise its last point is. Its
paired tests are one family: each p (a sign-flip permutation test) gets a Holm-adjusted p over all
of them, and "significant" follows the adjusted one. In a curve report "±" is always one standard
error over the validation users; each test is on one seed and so ignores training variance between seeds.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random
import time

import numpy as np
import torch

from ..errors import ConfigError
from ..evaluation.records import ranked_hits
from ..files import write_atomic, write_json
from . import store
from .runner import execute_run, free_memory
from .stats import ALPHA, EXACT_MAX, FLIPS, holm, paired_test, stored_adjusted_p, stored_p
from .user_metrics import per_user_metrics

CURVE_METRICS = ("ndcg@10", "hit@10")

# Keys that shape training only. The untrained model is the backbone itself (LoRA's B starts at zero),
# and evaluation uses neither the loss nor tau nor the optimizer, so runs whose configurations differ
# only in these keys share one measurement of point 0 (a whole validation pass saved per run).
TRAINING_ONLY_KEYS = frozenset({"llm_loss", "tau", "ats_tau_init", "ats_eta", "ats_alpha", "ats_range",
                                "learning_rate", "weight_decay", "warmup_ratio"})


def untrained_signature(run, dataset: str, seed: int, cmd_args: list[str]) -> str:
    """What point 0 of a run depends on: its signature without its name and training-only keys."""
    kept = {k: v for k, v in run.config.items() if k not in TRAINING_ONLY_KEYS}
    return dataclasses.replace(run, name="", config=kept).signature(dataset, seed, list(cmd_args))


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
    """The epochs after which each positive point is measured (0, the untrained model, needs none)."""
    for p in points:
        if p % per_epoch:
            raise ConfigError(f"curve point {p} is not a multiple of train_samples_per_epoch {per_epoch}; "
                              f"choose points that are")
    return [p // per_epoch for p in points if p > 0]


def _measure(trainer, model, valid_data, sequences: int, epoch: int) -> dict:
    """One point: validation metrics, each user's ranked hits and per-user statistics, tau."""
    valid = {k: float(v) for k, v in trainer.evaluate(valid_data, load_best_model=False).items()}
    hits = ranked_hits(valid_data, trainer.last_topk)
    return {"sequences": sequences, "epoch": epoch, "valid": valid, "stats": _point_stats(hits),
            "tau": float(model.tau), "valid_hits": hits}


def _untrained_point(trainer, model, valid_data, train_data) -> dict:
    """The point at 0 sequences: the backbone with its fresh LoRA adapter (B = 0, so exactly the
    backbone), measured before training or resuming. The RNG states are restored afterwards so the
    training that follows is the same with or without this point."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        trainer.eval_collector.data_collect(train_data)  # what trainer.start does before any evaluation
        point = _measure(trainer, model, valid_data, 0, 0)
    random.setstate(states[0])
    np.random.set_state(states[1])
    return point


def _echo_point(echo, run_name: str, seed: int, point: dict) -> None:
    stats = point["stats"]
    echo(f"curve {run_name} seed {seed}: {point['sequences']} sequences, valid NDCG@10 "
         f"{stats['ndcg@10']['mean']:.4f} ± {stats['ndcg@10']['se']:.4f}, Hit@10 "
         f"{stats['hit@10']['mean']:.4f} ± {stats['hit@10']['se']:.4f} ({stats['users']} users)")


def curve_run(run, dataset: str, seed: int, points: list[int], cmd_args: list[str], folder: str, echo,
              untrained: dict | None = None) -> dict:
    """Train one LLMMSL run to the last point, evaluating on validation at each point; resumable.

    The signature covers the positive points only: adding 0 (the untrained model) to a finished
    curve measures that point and keeps the trained ones. ``untrained`` maps
    :func:`untrained_signature` to a point 0 already measured by another run of the comparison,
    which this run then takes instead of measuring it again (the copy names the run it came from)."""
    from recbole.utils import init_logger

    from ..recbole_seam.build import build_run
    from ..recbole_seam.config import Config

    record_path = store.record_path(folder, f"curve-{run.name}", seed)
    record = store.read_json(record_path) or {}
    signature = run.signature(dataset, seed, cmd_args + [f"curve={[p for p in points if p > 0]}"])
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
    trained = [p for p in record["points"] if p["sequences"] > 0]
    resume = last + "-last" if trained and os.path.isdir(last + "-last") else None
    config = Config(model=run.model, dataset=dataset, config_file_list=run.config_files, cmd_args=cmd_args,
                    config_dict={**run.config, "seed": seed, "epochs": max(epochs), "resume": resume,
                                 "checkpoint_dir": os.path.dirname(last)})
    init_logger(config)
    built = build_run(config)
    train_data, valid_data, model, trainer = built.train_data, built.valid_data, built.model, built.trainer
    trainer.saved_model_file = last
    if not resume:
        record["points"] = [p for p in record["points"] if p["sequences"] == 0]
    cpu, wall = time.process_time(), time.perf_counter()
    spent_cpu, spent_wall = record.get("cpu_s", 0.0), record.get("wall_s", 0.0)

    def save(point: dict | None = None) -> None:
        """Write the record (with ``point`` and the time spent so far), so a stop keeps every point."""
        if point is not None:  # the untrained point comes first even when added to a finished curve
            before_cpu, before_wall = (0.0, 0.0) if point["sequences"] == 0 else (spent_cpu, spent_wall)
            point.update(cpu_s=before_cpu + time.process_time() - cpu, wall_s=before_wall + time.perf_counter() - wall)
            record["points"] = sorted([*record["points"], point], key=lambda p: p["sequences"])
            _echo_point(echo, run.name, seed, point)
        record.update(cpu_s=spent_cpu + time.process_time() - cpu, wall_s=spent_wall + time.perf_counter() - wall)
        write_json(record_path, record)

    if 0 in points and 0 not in {p["sequences"] for p in record["points"]}:
        shared = (untrained or {}).get(untrained_signature(run, dataset, seed, cmd_args))
        if shared is not None:
            echo(f"curve {run.name} seed {seed}: the untrained point is {shared['run']}'s (same backbone and "
                 f"evaluation; the runs differ only in training keys)")
            save({**shared["point"], "measured_in": shared["run"]})
        else:
            save(_untrained_point(trainer, model, valid_data, train_data))
    trainer.start(train_data)
    for epoch in sorted(epochs):  # a point cut short by a stop is measured on resuming, from that epoch's state
        if epoch * per_epoch in {p["sequences"] for p in record["points"]} or epoch < trainer.epochs_done:
            continue
        trainer.train_until(train_data, epoch * per_epoch)
        save(_measure(trainer, model, valid_data, epoch * per_epoch, epoch))
    trainer.save_model(max(epochs) - 1)
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
        positive = [p["sequences"] for c in curves for p in c["points"] if p["sequences"] > 0]
        if any(p["sequences"] == 0 for c in curves for p in c["points"]) and positive:
            ax.set_xscale("symlog", base=2, linthresh=min(positive))  # linear from 0 (untrained) to the first point
        else:
            ax.set_xscale("log", base=2)
        ax.set_xlabel("training sequences")
        ax.set_ylabel(f"valid {metric.replace('ndcg', 'NDCG').replace('hit', 'Hit')}")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    users = next((p["stats"]["users"] for c in curves for p in c["points"]), None)
    fig.suptitle(f"{title}" + (f" ({users} validation users, bands: ±1 standard error over users)" if users else ""),
                 fontsize=10)
    if axes[0].get_legend_handles_labels()[0]:  # a chart with nothing labelled yet gets no empty legend
        axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def _values_by_row(point: dict, metric: str) -> tuple[list[str], np.ndarray]:
    """A point's per-row values of ``metric``, ordered by (user, target) so two runs pair row by row
    (a user can own several rows in sliding-window splits)."""
    hits = point["valid_hits"]
    name, k = metric.split("@")
    values = per_user_metrics(hits, [name], [int(k)])[metric]
    targets = hits.get("targets") or [""] * len(hits["users"])
    keys = [f"{u}\t{t}" for u, t in zip(hits["users"], targets)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [keys[i] for i in order], values[order]


def _paired(point: dict, reference_point: dict, metric: str) -> dict | None:
    """Paired test of ``point`` against ``reference_point`` over their common users (None without both)."""
    if "valid_hits" not in point or "valid_hits" not in reference_point:
        return None
    users, values = _values_by_row(point, metric)
    ref_users, ref_values = _values_by_row(reference_point, metric)
    if users != ref_users:  # different samples cannot be paired; the report says so instead of guessing
        return {"metric": metric, "error": "different validation users"}
    test = paired_test(values, ref_values, metric)
    return {"metric": metric, "users": test.n_users, "difference": test.difference,
            "ci": [test.ci_low, test.ci_high], "p": test.p, "t_test_p": test.t_test_p, "flips": test.flips,
            "detectable": test.detectable,
            "detectable_relative": None if math.isnan(test.detectable_relative) else test.detectable_relative}


def _same_measurement(point: dict, run: str, other: dict, other_run: str) -> bool:
    """Whether two points are one measurement: a run's point 0 copied from the other run (``measured_in``)
    pairs with the original user for user, so comparing them tests nothing."""
    return _source(point, run) == _source(other, other_run)


def _source(point: dict, run: str) -> str:
    """The run whose evaluation produced ``point``."""
    return point.get("measured_in", run)


def curve_tests(curves: list[dict], reference: str | None = None) -> list[dict]:
    """What a curve can claim, as paired tests over the same validation users: every run against the
    reference run (the first curve unless named) at each point both reached, on the same seed, and each
    run's last point against its first (did it learn beyond the first point?). All of them are one family:
    each gets ``p_holm``, Holm's adjustment over the family, and ``significant`` from it. A pair that is one
    measurement (a shared point 0) is listed as such, with no test, outside the family."""
    if not curves:
        return []
    reference = reference if reference in {c["run"] for c in curves} else curves[0]["run"]
    tests = []
    for curve in curves:
        points = {p["sequences"]: p for p in curve["points"]}
        ref = next((c for c in curves if c["run"] == reference and c["seed"] == curve["seed"]), None)
        if ref is not None and curve is not ref:
            ref_points = {p["sequences"]: p for p in ref["points"]}
            for sequences in sorted(set(points) & set(ref_points)):
                if _same_measurement(points[sequences], curve["run"], ref_points[sequences], reference):
                    for metric in CURVE_METRICS:
                        tests.append({"kind": "run vs reference", "run": curve["run"], "against": reference,
                                      "seed": curve["seed"], "sequences": sequences, "metric": metric,
                                      "same_measurement": True,
                                      "measured_in": _source(points[sequences], curve["run"])})
                    continue
                for metric in CURVE_METRICS:
                    result = _paired(points[sequences], ref_points[sequences], metric)
                    if result:
                        tests.append({"kind": "run vs reference", "run": curve["run"], "against": reference,
                                      "seed": curve["seed"], "sequences": sequences, **result})
        ordered = [points[s] for s in sorted(points)]
        if len(ordered) > 1:
            for metric in CURVE_METRICS:
                result = _paired(ordered[-1], ordered[0], metric)
                if result:
                    tests.append({"kind": "last vs first point", "run": curve["run"], "against": curve["run"],
                                  "seed": curve["seed"], "sequences": ordered[-1]["sequences"],
                                  "from_sequences": ordered[0]["sequences"], **result})
    family = [t for t in tests if "p" in t]
    for test, adjusted in zip(family, holm([t["p"] for t in family])):
        test["p_holm"], test["significant"] = adjusted, adjusted < ALPHA
    return tests


def users_for_relative_se(rate: float, fraction: float = 0.2) -> int | None:
    """Users needed for the binomial standard error of a hit rate to be at most ``fraction`` of the rate:
    sqrt(p (1 - p) / n) <= fraction * p  <=>  n >= (1 - p) / (fraction^2 p)."""
    if not 0 < rate < 1:
        return None
    return math.ceil((1 - rate) / (fraction ** 2 * rate))


def curve_precision(curves: list[dict]) -> list[dict]:
    """Each run's Hit@10 standard error relative to its value at the last point, and the users that a
    ratio of one fifth needs (the precision a learning curve should have to show a trend)."""
    out = []
    for curve in curves:
        if not curve["points"]:
            continue
        last = max(curve["points"], key=lambda p: p["sequences"])
        hit = last["stats"]["hit@10"]
        out.append({"run": curve["run"], "seed": curve["seed"], "sequences": last["sequences"],
                    "users": last["stats"]["users"], "hit@10": hit["mean"], "se": hit["se"],
                    "se_over_value": hit["se"] / hit["mean"] if hit["mean"] else None,
                    "users_for_one_fifth": users_for_relative_se(hit["mean"])})
    return out


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _table_head(caption: str | None, columns: list[str]) -> list[str]:
    """A Markdown table's header lines, after a blank line and a caption when there is one."""
    head = [f"| {' | '.join(columns)} |", "|" + " --- |" * len(columns)]
    return head if caption is None else ["", caption, "", *head]


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _tests_caption(tests: list[dict], seeds: list) -> str:
    """How the curve's paired tests are made, the family their Holm p covers, and what they leave out."""
    family = sum(1 for t in tests if "p" in t)
    shared = any(t.get("same_measurement") for t in tests)
    kinds = ["every run against the reference at every point both reached"]
    if any(t["kind"] == "last vs first point" for t in tests):
        kinds.append("each run's last point against its first")
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"one seed each, of {', '.join(map(str, seeds))}"
    if not any("p_holm" in t for t in tests):  # a report written before the permutation test and Holm
        return ("Paired tests over the same validation users (two-sided bootstrap; detectable = the difference the "
                "test finds with 80% power at alpha 0.05):")
    return (f"Paired tests over the same validation users, each on one training per run ({seed_text}), so each "
            f"ignores the training variance between seeds. p: two-sided paired sign-flip permutation test of the "
            f"mean difference (exact when at most {EXACT_MAX} users differ, else {FLIPS:,} seeded random sign "
            f"flips, so no p is below 1/{FLIPS + 1:,}); Holm p: p adjusted over all {family} tests in this report "
            f"({', '.join(kinds)}; both metrics); significant when Holm p < {ALPHA}"
            f"{' (a shared point 0 is one measurement, not a test, and is outside the family)' if shared else ''}. "
            f"Difference: the mean of the unrounded per-user differences, with its bootstrap 95% interval (10,000 "
            f"resamples of users); paired t-test p-values are in the JSON; detectable: the difference the test finds "
            f"with 80% power at alpha {ALPHA}. No ± in this table.")


def curve_markdown(report: dict) -> str:
    """The curve's points, its baseline lines, its paired tests and its precision, as Markdown; each table's
    caption says what its figures are, and "±" is one standard error over users throughout."""
    curves, lines = report["curves"], report["lines"]
    seeds = sorted({c["seed"] for c in curves})
    users = sorted({p["stats"]["users"] for c in curves for p in c["points"]})
    rows = _table_head(f"Validation metrics after each number of training sequences ("
                       f"{'seed ' if len(seeds) == 1 else 'seeds '}{', '.join(map(str, seeds))}"
                       f"{', ' + ' or '.join(map(str, users)) + ' validation users' if users else ''}); ± is one "
                       f"standard error of the mean over the validation users (not a spread over seeds). The "
                       f"baselines' lines are their best validation scores, without ±.",
                       ["run", "sequences", "valid NDCG@10 ± SE", "valid Hit@10 ± SE", "users", "tau",
                        "CPU time so far"])[1:]
    for curve in curves:
        for p in curve["points"]:
            s = p["stats"]
            label = f"{p['sequences']:,}" if p["sequences"] else "0 (untrained)"
            if "measured_in" in p:
                label += f", {p['measured_in']}'s"
            rows.append(f"| {curve['run']} | {label} | {s['ndcg@10']['mean']:.4f} ± {s['ndcg@10']['se']:.4f} "
                        f"| {s['hit@10']['mean']:.4f} ± {s['hit@10']['se']:.4f} | {s['users']} | {p['tau']:.3f} "
                        f"| {p['cpu_s'] / 60:.0f} min |")
    for line in lines:
        valid = line.get("valid") or {}
        rows.append(f"| {line['run']} (best valid) | - | {valid.get('ndcg@10', float('nan')):.4f} "
                    f"| {valid.get('hit@10', float('nan')):.4f} | | | |")
    tests = report.get("tests") or []
    if tests:
        rows += _table_head(_tests_caption(tests, seeds),
                            ["comparison", "metric", "difference (95% CI)", "p", "Holm p", "verdict",
                             "detectable (relative to the reference)"])
        for t in tests:
            what = (f"{t['run']} vs {t['against']} at {t['sequences']:,}" if t["kind"] == "run vs reference"
                    else f"{t['run']}: {t['sequences']:,} vs {t['from_sequences']:,} sequences")
            if t.get("same_measurement"):
                rows.append(f"| {what} | {t['metric']} | 0: one measurement ({t.get('measured_in', t['against'])}'s "
                            f"evaluation), not a test | - | - | - | - |")
                continue
            if "error" in t:
                rows.append(f"| {what} | {t['metric']} | not paired: {t['error']} | | | | |")
                continue
            relative = "" if t["detectable_relative"] is None else f" ({t['detectable_relative']:.0%})"
            holm_p = "-" if t.get("p_holm") is None else _fmt_p(t["p_holm"])
            verdict = "significant" if stored_adjusted_p(t) < ALPHA else "not significant"
            rows.append(f"| {what} | {t['metric']} | {_signed(t['difference'])} ({_signed(t['ci'][0])} to "
                        f"{_signed(t['ci'][1])}) | {_fmt_p(stored_p(t))} | {holm_p} | {verdict} "
                        f"| {t['detectable']:.4f}{relative} |")
    precision = report.get("precision") or []
    if precision:
        rows += _table_head("Precision at the last point (Hit@10 ± one standard error over users; SE / value, and the "
                            "users a ratio of one fifth needs, from the binomial standard error):",
                            ["run", "sequences", "users", "Hit@10 ± SE", "SE / value", "users for one fifth"])
        for p in precision:
            need = "-" if p["users_for_one_fifth"] is None else f"{p['users_for_one_fifth']:,}"
            ratio = "-" if p["se_over_value"] is None else f"{p['se_over_value']:.2f}"
            rows.append(f"| {p['run']} | {p['sequences']:,} | {p['users']} | {p['hit@10']:.4f} ± {p['se']:.4f} "
                        f"| {ratio} | {need} |")
    return "\n".join(rows) + "\n"


def run_curve(spec, cmd_args=(), results_dir: str | None = None, echo=print) -> dict:
    """Run (or resume) a learning-curve comparison; write ``<name>.json``, ``.md`` and ``.png``."""
    from ..recbole_seam.registry import is_plugin_model

    cmd_args = list(cmd_args)
    folder = store.comparison_folder(results_dir or spec.results_dir, spec.name)
    curves, lines, cache, untrained = [], [], {}, {}
    for seed in spec.seeds:
        for run in spec.runs:
            if not run.runs_with(seed):
                continue
            if is_plugin_model(run.model):
                curve = curve_run(run, spec.dataset, seed, list(spec.curve), cmd_args, folder, echo, untrained)
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
    ``pending``: (run, seed) pairs without a finished record, named at the top of the Markdown."""
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
              "pending": [{"run": name, "seed": seed} for name, seed in pending]}
    markdown = curve_markdown(report)
    if pending:
        names = ", ".join(f"{name} (seed {seed})" for name, seed in pending)
        markdown = f"**Partial report: no finished record yet for {names}.**\n\n" + markdown
    write_json(base + ".json", report)
    write_atomic(base + ".md", markdown)
    curve_chart(curves, report["lines"], base + ".png", f"{spec.name}: {spec.dataset}")
    report["files"] = {"json": base + ".json", "markdown": base + ".md", "chart": base + ".png"}
    return report


def curve_report_only(spec, cmd_args=(), results_dir: str | None = None, echo=print) -> dict:
    """Rewrite a curve's report from the records in its results folder, training nothing: a record counts
    when its signature matches the run's current settings and it has every point; the others are pending.
    This is how a published curve is re-tested after the statistics change (its records keep every
    validation user's hits)."""
    from ..recbole_seam.registry import is_plugin_model

    cmd_args = list(cmd_args)
    folder = store.comparison_folder(results_dir or spec.results_dir, spec.name)
    positive = [p for p in spec.curve if p > 0]
    curves, lines, pending = [], [], []
    for seed in spec.seeds:
        for run in spec.runs:
            if not run.runs_with(seed):
                continue
            if is_plugin_model(run.model):
                record = store.read_json(store.record_path(folder, f"curve-{run.name}", seed))
                signature = run.signature(spec.dataset, seed, cmd_args + [f"curve={positive}"])
                done = {p["sequences"] for p in (record or {}).get("points", [])}
                if record and record.get("signature") == signature and set(spec.curve) <= done:
                    curves.append(record)
                    continue
            else:
                record = store.read_record(folder, run.name, seed)
                if (record and record.get("status") == "ok"
                        and record.get("signature") == run.signature(spec.dataset, seed, cmd_args)):
                    lines.append({**record, "run": run.name})
                    continue
            echo(f"{run.name} seed {seed}: no finished record with the current settings")
            pending.append((run.name, seed))
    return write_curve_report(spec, folder, curves, lines, pending)
