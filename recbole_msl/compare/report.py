"""A comparison's records turned into one report: Markdown, CSV, JSON and a chart.

Metrics are RecBole's test results, as mean ± sample std over the seeds a run
finished (in these reports "±" is always that spread over seeds). Gains are against
the reference run, with a paired sign-flip permutation test over the users both runs
were evaluated on; every such test of the report is one family for Holm's
adjustment, and a gain whose adjusted p is not below 0.05 is written as not
significant (sixteen tests at 0.05 of runs that do not differ would call at least
one of them significant more often than not).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import re

import numpy as np

from ..summary import at_grid_edge
from .stats import ALPHA, EXACT_MAX, FLIPS, holm, mean_std, paired_test, stored_adjusted_p, stored_p
from .user_metrics import hits_at, per_user_metrics, wilson_interval

_PRETTY = {"recall": "Recall", "mrr": "MRR", "ndcg": "NDCG", "hit": "Hit", "precision": "Precision", "map": "MAP"}
RESAMPLES = 10000


def portable_paths(value, root: str | None = None):
    """``value`` (a record, a report, any JSON-like data) with every absolute path under ``root`` (default: the
    working directory, the project root a comparison runs from), or else under the folder that holds the shipped
    ``properties/`` (the project root, where the shipped comparisons and profiles live), written relative to it,
    inside longer strings too (an error message, ``--checkpoint_dir=...``), so a committed record names no folder
    of the machine it ran on. Paths elsewhere (a model folder given as ``/models/...``) stay as given."""
    from ..recbole_seam.config import PROPERTIES_DIR

    roots = [os.path.abspath(root or os.getcwd()), os.path.dirname(os.path.abspath(PROPERTIES_DIR))]
    roots = [r.rstrip(os.sep) for r in dict.fromkeys(roots) if r.rstrip(os.sep)]  # "/" itself shortens nothing
    # a root's prefix where a path starts: at the string's start or after a space, quote, '=', '(', ...
    patterns = [re.compile(r"(?<![\w.~/-])" + re.escape(r + os.sep)) for r in roots]

    def convert(item):
        if isinstance(item, str):
            if item in roots:
                return "."
            for pattern in patterns:
                item = pattern.sub("", item)
            return item
        if isinstance(item, dict):
            return {key: convert(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [convert(v) for v in item]
        return item

    return convert(value)


def pretty_metric(name: str) -> str:
    base, _, k = name.partition("@")
    return f"{_PRETTY.get(base, base)}@{k}" if k else _PRETTY.get(base, base)


def _metric_order(records) -> list[str]:
    for record in records:
        if record.get("status") == "ok" and record.get("test"):
            return list(record["test"])
    return []


def _metric_names_and_topk(metrics: list[str]) -> tuple[list[str], list[int]]:
    names, topk = [], []
    for metric in metrics:
        base, _, k = metric.partition("@")
        if k.isdigit():
            names.append(base)
            topk.append(int(k))
    return list(dict.fromkeys(names)), sorted(set(topk))


def _per_user(record, metrics) -> dict | None:
    encoded = record.get("test_hits")
    if not encoded or not encoded.get("hits"):
        return None
    names, topk = _metric_names_and_topk(metrics)
    return per_user_metrics(encoded, names, topk)


def _paired(spec, by_run, name: str, other: str, metrics, notes: list[str]) -> dict:
    """Per metric, the paired test of run ``name`` against run ``other`` over the users both were tested on,
    on each user's value averaged over the seeds both finished ({} when they cannot be paired: a note says why)."""
    ok = {r["seed"]: r for r in by_run.get(name, []) if r.get("status") == "ok"}
    theirs = {r["seed"]: r for r in by_run.get(other, []) if r.get("status") == "ok"}
    seeds = [s for s in spec.seeds if s in ok and s in theirs]
    if not seeds:
        return {}
    mismatch = [s for s in seeds if (ok[s].get("test_hits") or {}).get("fingerprint")
                != (theirs[s].get("test_hits") or {}).get("fingerprint")]
    if mismatch:
        notes.append(f"{name} and {other} were tested on different rows (seed {mismatch[0]}): "
                     f"no paired test; give both the same data settings")
        return {}
    per_seed_run = [_per_user(ok[s], metrics) for s in seeds]
    per_seed_other = [_per_user(theirs[s], metrics) for s in seeds]
    if any(v is None for v in per_seed_run + per_seed_other):
        return {}
    tests = {}
    for metric in metrics:
        if metric not in per_seed_run[0]:
            continue
        run_values = np.mean([v[metric] for v in per_seed_run], axis=0)
        other_values = np.mean([v[metric] for v in per_seed_other], axis=0)
        test = paired_test(run_values, other_values, metric, resamples=RESAMPLES)
        tests[metric] = {**test.__dict__, "difference": test.difference, "seeds": seeds}
    return tests


def _gains(spec, by_run, metrics) -> tuple[dict, dict, list[str]]:
    """Paired tests of every run against the reference and of the spec's ``pairs``, per metric, each with its
    Holm-adjusted p over all of them (the report's family); plus notes on what was not comparable."""
    notes = []
    reference = spec.reference
    gains = {}
    if reference is not None and reference in by_run:
        for name in by_run:
            if name != reference:
                tests = _paired(spec, by_run, name, reference, metrics, notes)
                if tests:
                    gains[name] = tests
    pairs = {}
    for name, other in getattr(spec, "pairs", None) or []:
        tests = _paired(spec, by_run, name, other, metrics, notes)
        if tests:
            pairs[f"{name} vs {other}"] = tests
    family = [gain for group in (gains, pairs) for by_metric in group.values() for gain in by_metric.values()]
    for gain, adjusted in zip(family, holm([gain["p"] for gain in family])):
        gain["p_holm"], gain["significant"] = adjusted, adjusted < ALPHA
    return gains, pairs, notes


def _guided_triples(spec, reference) -> list[tuple[str, str, str]]:
    """(guided run, its LLM-alone run, a baseline) for the overlap table: a pair [guided, other] of the spec where
    the guided run has an assistant and an LLM term and the other has no assistant is the guided run's LLM alone;
    its baselines are the runs it is paired with that have no LLM term (the assistant alone through the trie,
    ``llm_weight: 0``), then the reference."""
    config = {run.name: run.config for run in spec.runs}

    def guided(name):
        return bool(config.get(name, {}).get("assistant")) and config[name].get("llm_weight", 1) != 0

    triples = []
    for name, other in getattr(spec, "pairs", None) or []:
        if not guided(name) or other not in config or config[other].get("assistant"):
            continue
        baselines = [b for n, b in spec.pairs if n == name and b in config and config[b].get("llm_weight") == 0]
        if reference in config and reference not in baselines:
            baselines.append(reference)
        triples += [(name, other, baseline) for baseline in baselines]
    return triples


def _overlap(spec, by_run, metrics) -> dict:
    """Per guided run and baseline, per seed: of the test rows that only the LLM alone hit at k (the baseline
    missed them), how many the guided search hits too; how many of the baseline's hits it misses; how many rows it
    hits that neither hit. Counts of rows (each seed's own training); {} without pairs to read."""
    _, topk = _metric_names_and_topk(metrics)
    if not topk:
        return {}
    k = 10 if 10 in topk else max(topk)
    table = []
    for name, llm, baseline in _guided_triples(spec, spec.reference):
        ok = {run: {r["seed"]: r for r in by_run.get(run, []) if r.get("status") == "ok"}
              for run in (name, llm, baseline)}
        for seed in spec.seeds:
            records = [ok[run].get(seed) for run in (name, llm, baseline)]
            encoded = [(r or {}).get("test_hits") or {} for r in records]
            if not all(e.get("hits") for e in encoded) or len({e.get("fingerprint") for e in encoded}) > 1:
                continue
            g, l, b = (hits_at(e, k) for e in encoded)
            only_llm = l & ~b
            kept = int(np.sum(only_llm & g))
            low, high = wilson_interval(kept, int(only_llm.sum()))
            table.append({"guided": name, "llm": llm, "baseline": baseline, "seed": seed, "k": k,
                          "rows": int(g.size), "only_llm": int(only_llm.sum()), "kept": kept,
                          "kept_ci": [low, high], "baseline_hits": int(b.sum()), "lost": int(np.sum(b & ~g)),
                          "new": int(np.sum(g & ~b & ~l)), "guided_hits": int(g.sum())})
    return {"k": k, "rows": table} if table else {}


def _summarise_run(run, records, metrics, pending=()) -> dict:
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [{"seed": r["seed"], "error": r.get("error")} for r in records if r.get("status") != "ok"]

    def stat(values):
        mean, std = mean_std(values)
        return {"mean": mean, "std": std, "values": list(values)}

    summary = {"name": run.name, "model": run.model, "config": run.config,
               "config_files": run.config_files, "seeds_ok": [r["seed"] for r in ok], "failures": failed,
               "seeds_pending": [seed for name, seed in pending if name == run.name]}
    if ok:
        summary["test"] = {m: stat([r["test"].get(m, float("nan")) for r in ok]) for m in metrics}
        valid_keys = list(ok[0].get("valid") or {})
        summary["valid"] = {m: stat([(r.get("valid") or {}).get(m, float("nan")) for r in ok]) for m in valid_keys}
        for key in ("train_s", "valid_s", "eval_s", "wall_s", "cpu_s", "lost_cpu_s"):
            known = [r[key] for r in ok if r.get(key) is not None]
            summary[key] = float(np.mean(known)) if known else None
        summary["trainable_parameters"] = ok[0].get("trainable_parameters")
        shared = sorted({r["training_shared_with"] for r in ok if r.get("training_shared_with")})
        if shared:
            summary["training_shared_with"] = ", ".join(shared)
        grids = [r["assistant"] for r in ok if r.get("assistant")]
        if grids:  # the weight each seed kept on validation, and the assistant's own test metrics
            summary["assistant"] = [{"seed": r["seed"], "model": r["assistant"].get("model"),
                                     "weight": r["assistant"].get("weight"),
                                     "grid": [(g["assistant_weight"], g["score"]) for g in r["assistant"]["grid"]],
                                     "assistant_test": r["assistant"].get("test"),
                                     "search_overlap": r["assistant"].get("search_overlap")}
                                    for r in ok if r.get("assistant")]
        summary["peak_rss_mb"] = max(r.get("peak_rss_mb") or 0.0 for r in ok)
        cuda = [r.get("peak_cuda_mb") for r in ok if r.get("peak_cuda_mb") is not None]
        summary["peak_cuda_mb"] = max(cuda) if cuda else None
        tested = (ok[0].get("test_hits") or {}).get("users") or []
        summary["test_rows"], summary["test_users"] = len(tested), len(set(tested))
    return summary


def build_report(spec, records: list[dict], pending=()) -> dict:
    """Everything the outputs show, as plain data. ``pending``: (run, seed) pairs not finished yet,
    for a report written while the comparison is still under way."""
    by_run = {run.name: [r for r in records if r.get("run") == run.name] for run in spec.runs}
    metrics = _metric_order(records)
    report_metrics = [m for m in (spec.report_metrics or metrics) if m in metrics] or metrics
    gains, pairs, notes = _gains(spec, by_run, report_metrics)
    runs = []
    for run in spec.runs:
        summary = _summarise_run(run, by_run[run.name], metrics, pending)
        summary["gains"] = gains.get(run.name, {})
        runs.append(summary)
    fingerprints = {(r.get("test_hits") or {}).get("fingerprint") for r in records if r.get("status") == "ok"}
    fingerprints.discard(None)
    if len(fingerprints) > 1:
        notes.append("runs were not all tested on the same rows; compare their data settings")
    selection = [r.get("valid_metric") or str((r.get("config") or {}).get("valid_metric", "")).lower()
                 for r in records if r.get("status") == "ok"]
    selection = [m for m in selection if m in report_metrics]  # the metric runs were selected on
    primary = max(set(selection), key=selection.count) if selection else (report_metrics or [None])[0]
    return portable_paths({
        "comparison": spec.name, "primary_metric": primary, "dataset": spec.dataset, "seeds": spec.seeds, "reference": spec.reference,
        "source": spec.source, "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "metrics": metrics, "report_metrics": report_metrics, "alpha": ALPHA, "bootstrap_resamples": RESAMPLES,
        "p_value": f"two-sided paired sign-flip permutation test of the mean difference (exact up to {EXACT_MAX} "
                   f"non-zero differences, else {FLIPS} seeded random flips, p = (count + 1) / (flips + 1)); "
                   f"bootstrap for the 95% interval only; paired t-test p beside it",
        "permutation_flips": FLIPS, "multiple_testing": {
            "method": "holm", "family_size": sum(len(g) for g in gains.values()) + sum(len(p) for p in pairs.values()),
            "family": "every paired test in this report (all runs against the reference, the listed pairs, all "
                      "metrics)"},
        "pairs": pairs, "overlap": _overlap(spec, by_run, report_metrics),
        "same_test_rows": len(fingerprints) <= 1, "notes": notes, "runs": runs,
        "pending": [{"run": name, "seed": seed} for name, seed in pending],
        "records": [{k: v for k, v in r.items() if k != "test_hits"} for r in records],
    })


def _fmt_value(stat) -> str:
    """Mean ± sample std over the seeds the run finished; a single seed has no spread to show."""
    if stat is None or stat["mean"] != stat["mean"]:
        return "—"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}" if len(stat["values"]) > 1 else f"{stat['mean']:.4f}"


def _fmt_seconds(seconds) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _fmt_count(count) -> str:
    if count is None:
        return "—"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def fmt_p(p: float, at_floor: bool = False) -> str:
    """A p-value for a table: three decimals, or an upper bound below 0.001. ``at_floor``: the p is the
    smallest its random sign flips can give (1/(flips + 1), times the family's size once Holm-adjusted), so it
    bounds the p from above: written "<" and rounded up (28/10,001 = 0.0028 is "<0.003", never "<0.002")."""
    if p < 0.001:
        return "<0.001"
    if at_floor:
        return f"<{math.ceil(p * 1000 - 1e-9) / 1000:.3f}"
    return f"{p:.3f}"


def at_permutation_floor(test: dict) -> bool:
    """Whether a stored test's raw p is the floor of its random sign flips, (0 + 1) / (flips + 1): no flipped
    mean was as extreme as the observed one, so the p (and its Holm adjustment) is an upper bound."""
    flips = test.get("flips") or 0
    return flips > 0 and stored_p(test) <= (1 + 1e-9) / (flips + 1)


def fmt_gain(gain: dict | None) -> str:
    """One paired test: relative and absolute difference (from unrounded means), raw and Holm p, verdict
    (from the Holm p), detectable difference. Reads reports written before Holm (bootstrap_p, no p_holm)."""
    if not gain:
        return "—"
    rel = gain["relative_gain"]
    diff = gain.get("difference", gain["mean_run"] - gain["mean_reference"])
    head = "n/a" if math.isnan(rel) else f"{rel * 100:+.1f}%"
    verdict = "significant" if gain["significant"] else "not significant"
    floor = at_permutation_floor(gain)
    p_value = f"p={fmt_p(stored_p(gain), floor)}".replace("=<", "<")
    if gain.get("p_holm") is not None:
        p_value += f", Holm p={fmt_p(stored_adjusted_p(gain), floor)}".replace("=<", "<")
    detectable = gain.get("detectable")
    if detectable is None or math.isnan(detectable):
        return f"{head} ({diff:+.4f}, {p_value}, {verdict})"
    relative = gain.get("detectable_relative", float("nan"))
    mde = f"{detectable:.4f}" + ("" if math.isnan(relative) else f" = {relative * 100:.0f}%")
    return f"{head} ({diff:+.4f}, {p_value}, {verdict}; detectable at 80% power: {mde})"


def _seeds(seeds) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _status(summary) -> str:
    by_error: dict[str, list] = {}
    for failure in summary["failures"]:
        by_error.setdefault(failure["error"], []).append(failure["seed"])
    parts = [f"failed ({_seeds(seeds)}): {error}" for error, seeds in by_error.items()]
    if summary.get("training_shared_with"):
        parts.append(f"ok (evaluates the adapters of {summary['training_shared_with']}: no training of its own)")
    if summary.get("seeds_pending"):
        parts.append(f"not finished yet ({_seeds(summary['seeds_pending'])})")
    return "; ".join(parts) or "ok"


def tested_rows(report: dict) -> tuple[str | None, str]:
    """How many test rows the metrics cover, labelled honestly: a benchmark split with sliding windows can
    test one user several times, so its unit is the row, not the user. Returns (label, plural unit)."""
    run = next((r for r in report["runs"] if r.get("test_rows")), None)
    if run is None:
        return None, "users"
    rows, users = run["test_rows"], run.get("test_users", run["test_rows"])
    if users == rows:
        return f"{rows} test users", "users"
    return f"{rows} test rows ({users} users)", "rows"


def _family_size(report: dict) -> int:
    return (report.get("multiple_testing") or {}).get("family_size") or sum(len(r["gains"]) for r in report["runs"])


def _gain_column_note(report: dict) -> str:
    return (f" The {pretty_metric(report['primary_metric'])} vs {report['reference']} column repeats that "
            f"metric's paired test from the table below; its caption says how the test is made.")


def _seed_note(report: dict, unit: str) -> str:
    """What the tests leave out: they resample users (or rows) only, so the variance between trainings is
    not in them; said outright for a run tested on a single seed."""
    tested = [(run["name"], next(iter(run["gains"].values()))["seeds"]) for run in report["runs"] if run["gains"]]
    single = [(name, seeds[0]) for name, seeds in tested if len(seeds) == 1]
    if len(single) == len(tested):
        seeds = sorted({seed for _, seed in single})
        return (f"Every test here uses a single seed ({', '.join(map(str, seeds))}): it compares one training of "
                f"each run over the {unit} and ignores the training variance between seeds.")
    several = sorted({seed for _, seeds in tested if len(seeds) > 1 for seed in seeds})
    note = (f"Runs with several seeds are tested on each {unit[:-1]}'s value averaged over the seeds both runs "
            f"finished ({', '.join(map(str, several))}); the test still resamples {unit} only, not seeds.")
    if single:
        names = ", ".join(f"{name} (seed {seed})" for name, seed in single)
        note += f" {names} {'is' if len(single) == 1 else 'are'} tested on a single seed: that test ignores " \
                f"the training variance between seeds."
    return note


def _tests_caption(report: dict, unit: str) -> str:
    """How the gains table's tests are made, the family their Holm p covers, and what "±" is not here."""
    ref, alpha = report["reference"], report["alpha"]
    flips = report.get("permutation_flips")
    if flips is None:  # a report written before the permutation test: its p is the bootstrap's
        how = f"two-sided bootstrap, {report['bootstrap_resamples']:,} resamples; significant when p < {alpha}"
    else:
        how = (f"p: two-sided paired sign-flip permutation test of the mean difference, exact when at most "
               f"{EXACT_MAX} {unit} differ, else {flips:,} seeded random sign flips, so no p is below "
               f"1/{flips + 1:,}; Holm p: p adjusted over all "
               f"{_family_size(report)} paired tests in this report (every run against {ref}"
               f"{', the pairs listed below' if report.get('pairs') else ''}, every metric); "
               f"significant when Holm p < {alpha}")
    return (f"Relative gain over **{ref}** with a paired test over the same {unit} ({how}; differences are "
            f"computed from unrounded per-{unit[:-1]} values on the seeds both runs finished, so they can differ "
            f"from the difference of the rounded means above: in the last digit, or more where a run has fewer "
            f"seeds than {ref}; 'detectable' is the smallest difference the test finds with 80% power with "
            f"these {unit}, from their paired differences; bootstrap 95% intervals and paired t-test p-values "
            f"are in the JSON; no ± in this table). {_seed_note(report, unit)}")


def _assistant_caption(report: dict) -> str:
    return ("Runs ranked with an assistant (a RecBole model guiding beam search): the weight kept is the best on "
            "validation (never test) among the grid shown (where it is the grid's largest, a larger weight may do "
            "better on validation); the assistant's own test metric is RecBole's full ranking "
            "by the assistant alone (trained in the run on the same split, after the LLM); the last column is, for "
            "the assistant alone through the trie (llm_weight 0), the mean share of the assistant's own top 10 that "
            "the trie search returns, ± its standard error over the test rows.")


def to_markdown(report: dict) -> str:
    metrics, seeds, ref = report["report_metrics"], report["seeds"], report["reference"]
    head_metric = report.get("primary_metric")
    lines = [f"# {report['comparison']} ({report['dataset']})", ""]
    pending = report.get("pending") or []
    if pending:
        finished = sum(len(run["seeds_ok"]) + len(run["failures"]) for run in report["runs"])
        lines.append(f"**Partial report: {finished} of {finished + len(pending)} runs have finished** (the Status "
                     f"column names the rest); the comparison's own command runs them and rewrites this report.")
        lines.append("")
    rows, unit = tested_rows(report)
    over = (f"mean ± sample std over the seeds each run finished, of {', '.join(map(str, seeds))} (± is the "
            f"spread over seeds, not a standard error; one seed: no ±)"
            if len(seeds) > 1 else f"seed {seeds[0]} (one training per run: no ±)")
    lines.append(f"Test metrics, {over}"
                 f"{f', on {rows}' if rows else ''}"
                 f"{', the same rows for every run' if report['same_test_rows'] else ''}. "
                 f"Each run's model is selected on the validation split. Train, Valid eval and Test eval are wall "
                 f"time, CPU time the process's CPU time over all threads, each the mean over seeds (a resumed run "
                 f"sums its attempts, less the work a cut attempt did that was redone: lost_cpu_s in the CSV)."
                 f"{_gain_column_note(report) if ref and head_metric else ''}")
    lines.append("")
    header = ["Run", "Model"] + [pretty_metric(m) for m in metrics]
    if ref and head_metric:
        header.append(f"{pretty_metric(head_metric)} vs {ref}")
    header += ["Train", "Valid eval", "Test eval", "CPU time", "Trainable params", "Peak memory", "Status"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for run in report["runs"]:
        cells = [run["name"], run["model"]]
        cells += [_fmt_value((run.get("test") or {}).get(m)) for m in metrics]
        if ref and head_metric:
            cells.append("reference" if run["name"] == ref else fmt_gain(run["gains"].get(head_metric)))
        peak = run.get("peak_cuda_mb") or run.get("peak_rss_mb")
        cells += [_fmt_seconds(run.get("train_s")), _fmt_seconds(run.get("valid_s")), _fmt_seconds(run.get("eval_s")),
                  _fmt_seconds(run.get("cpu_s")), _fmt_count(run.get("trainable_parameters")),
                  f"{peak:,.0f} MB {'CUDA' if run.get('peak_cuda_mb') else 'RSS'}" if peak else "—", _status(run)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    if ref and any(run["gains"] for run in report["runs"]):
        lines += ["", _tests_caption(report, unit), ""]
        header = ["Run"] + [pretty_metric(m) for m in metrics]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        for run in report["runs"]:
            if run["gains"]:
                lines.append("| " + " | ".join([run["name"]] + [fmt_gain(run["gains"].get(m)) for m in metrics]) + " |")
    guided = [run for run in report["runs"] if run.get("assistant")]
    if guided:
        metric = pretty_metric(head_metric or "ndcg@10")
        header = (f"| Run | Seed | Assistant | Weight kept | Validation {metric} per weight | Assistant alone, test "
                  f"{metric} | Search keeps of its own top 10 |")
        lines += ["", _assistant_caption(report), "", header, "|---|---|---|---|---|---|---|"]
        for run in guided:
            for entry in run["assistant"]:
                grid = ", ".join(f"{w:g}: {score:.4f}" for w, score in entry["grid"])
                own = (entry.get("assistant_test") or {}).get(head_metric or "ndcg@10")
                overlap = entry.get("search_overlap")
                kept = (f"{overlap['mean'] * 100:.1f}% ± {overlap['se'] * 100:.1f}% ({overlap['rows']} rows)"
                        if overlap else "—")
                edge = " (the grid's largest)" if at_grid_edge([w for w, _ in entry["grid"]], entry["weight"]) else ""
                lines.append(f"| {run['name']} | {entry['seed']} | {entry['model']} | {entry['weight']:g}{edge} | {grid} | "
                             f"{'—' if own is None else f'{own:.4f}'} | {kept} |")
    pairs = report.get("pairs") or {}
    if pairs:
        caption = (f"Paired tests between the listed runs (the first run's gain over the second; the same test and "
                   f"Holm family of {_family_size(report)} as above).")
        lines += ["", caption, ""]
        header = ["Pair"] + [pretty_metric(m) for m in metrics]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        for pair, tests in pairs.items():
            lines.append("| " + " | ".join([pair] + [fmt_gain(tests.get(m)) for m in metrics]) + " |")
    lines += _overlap_lines(report, unit)
    for note in report["notes"]:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def _share(part: int, whole: int) -> str:
    return "—" if not whole else f"{part / whole * 100:.0f}%"


def _overlap_lines(report: dict, unit: str) -> list[str]:
    """The per-row overlap of hits: what the guided search keeps of the hits only the LLM alone had, and what it
    loses of the compared run's hits (counts of rows, per seed and summed over seeds)."""
    overlap = report.get("overlap") or {}
    rows = overlap.get("rows") or []
    if not rows:
        return []
    k = overlap["k"]
    caption = (f"What the LLM adds to the guided search, {unit[:-1]} by {unit[:-1]} (Hit@{k}, counts of test {unit}; "
               f"each seed is its own training of every run). 'Only the LLM alone': {unit} the LLM-only run hit at "
               f"{k} and the compared run missed; 'kept': those the guided search hits too, with the 95% Wilson "
               f"interval of that share over those {unit}; 'lost': the compared run's hits the guided search "
               f"misses; 'new': {unit} the guided search hits that neither the LLM alone nor the compared run hit. "
               f"Guided hits - compared hits = kept + new - lost. The 'all seeds' line sums the counts (the same "
               f"{unit} once per seed, so no interval; the range is the per-seed shares).")
    lines = ["", caption, "",
             f"| Guided run | LLM alone | Compared with | Seed | {unit.capitalize()} | Hits only the LLM alone had | "
             f"Kept by the guided search | Compared run's hits | Lost by the guided search | New | "
             f"Guided - compared hits |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row["guided"], row["llm"], row["baseline"]), []).append(row)
    for (guided, llm, baseline), entries in groups.items():
        for row in entries:
            low, high = row["kept_ci"]
            interval = "" if low != low else f" ({low * 100:.0f}% to {high * 100:.0f}%)"
            lines.append(f"| {guided} | {llm} | {baseline} | {row['seed']} | {row['rows']} | {row['only_llm']} | "
                         f"{row['kept']} = {_share(row['kept'], row['only_llm'])}{interval} | {row['baseline_hits']} | "
                         f"{row['lost']} | {row['new']} | {row['guided_hits'] - row['baseline_hits']:+d} |")
        if len(entries) > 1:
            total = {key: sum(row[key] for row in entries)
                     for key in ("rows", "only_llm", "kept", "baseline_hits", "lost", "new", "guided_hits")}
            shares = [row["kept"] / row["only_llm"] for row in entries if row["only_llm"]]
            spread = f" (seeds: {min(shares) * 100:.0f}% to {max(shares) * 100:.0f}%)" if shares else ""
            lines.append(f"| {guided} | {llm} | {baseline} | all seeds | {total['rows']} | {total['only_llm']} | "
                         f"{total['kept']} = {_share(total['kept'], total['only_llm'])}{spread} | "
                         f"{total['baseline_hits']} | {total['lost']} | {total['new']} | "
                         f"{total['guided_hits'] - total['baseline_hits']:+d} |")
    return lines


def to_csv(report: dict) -> str:
    metrics = report["metrics"]
    valid_keys = []
    for record in report["records"]:
        valid_keys += [k for k in (record.get("valid") or {}) if k not in valid_keys]
    columns = (["run", "model", "seed", "status", "error"] + [f"test_{m}" for m in metrics]
               + [f"valid_{m}" for m in valid_keys]
               + ["train_s", "valid_s", "eval_s", "wall_s", "cpu_s", "attempts", "lost_cpu_s", "data_s", "model_load_s", "trainable_parameters", "peak_rss_mb",
                  "peak_cuda_mb", "config", "config_files", "cmd_args", "saved_model_file", "log_file"])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in report["records"]:
        row = {k: record.get(k) for k in columns}
        row.update({f"test_{m}": (record.get("test") or {}).get(m) for m in metrics})
        row.update({f"valid_{m}": (record.get("valid") or {}).get(m) for m in valid_keys})
        row["config"] = json.dumps(record.get("config") or {}, sort_keys=True, default=str)
        row["config_files"] = " ".join(record.get("config_files") or [])
        row["cmd_args"] = " ".join(record.get("cmd_args") or [])
        writer.writerow(row)
    return out.getvalue()
