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

import datetime

import numpy as np

from .popularity import breakdown
from .portable import portable_paths
from .stats import ALPHA, EXACT_MAX, FLIPS, holm, mean_std, paired_test
from .user_metrics import hits_at, per_user_metrics, wilson_interval

_PRETTY = {"recall": "Recall", "mrr": "MRR", "ndcg": "NDCG", "hit": "Hit", "precision": "Precision", "map": "MAP"}
RESAMPLES = 10000


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


def _paired(spec, by_run, name: str, other: str, metrics, notes: list[str], rows=None) -> dict:
    """Per metric, the paired test of run ``name`` against run ``other`` over the users both were tested on,
    on each user's value averaged over the seeds both finished ({} when they cannot be paired: a note says why);
    ``rows``: a boolean mask of the test rows to test on (a popularity bucket), all rows by default."""
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
        if rows is not None:
            run_values, other_values = run_values[rows], other_values[rows]
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
    return gains, pairs, notes


def _comparisons(spec, by_run, gains: dict, pairs: dict) -> list[tuple[str, str]]:
    """The (run, other) pairs the report tests: every run against the reference, then the listed pairs."""
    found = [(name, spec.reference) for name in gains]
    return found + [tuple(key.split(" vs ", 1)) for key in pairs]


def _popularity(spec, by_run, metric: str, counts: dict | None, comparisons, notes: list[str]) -> dict:
    """The popularity breakdown of ``metric`` (see :mod:`recbole_msl.compare.popularity`), {} without counts or
    without per-row hits on the same rows."""
    if not counts or not metric:
        return {}
    values, targets = {}, None
    for name, records in by_run.items():
        ok = [r for r in records if r.get("status") == "ok" and (r.get("test_hits") or {}).get("hits")]
        per_seed = [_per_user(r, [metric]) for r in ok]
        if not per_seed or any(metric not in v for v in per_seed):
            continue
        if len({(r["test_hits"] or {}).get("fingerprint") for r in ok}) > 1:
            continue
        values[name] = np.mean([v[metric] for v in per_seed], axis=0)
        targets = targets or ok[0]["test_hits"]["targets"]
    if targets is None or len({v.size for v in values.values()}) > 1:
        return {}

    def test(name, other, mask):
        return _paired(spec, by_run, name, other, [metric], notes, rows=mask).get(metric)

    return breakdown(targets, counts, values, test, [c for c in comparisons if c[0] in values and c[1] in values],
                     metric)


def _adjust(gains: dict, pairs: dict, popularity: dict) -> int:
    """Holm over the report's whole family: every test against the reference, of the pairs and in the popularity
    buckets; returns the family's size."""
    family = [gain for group in (gains, pairs) for by_metric in group.values() for gain in by_metric.values()]
    family += [t for bucket in popularity.get("buckets", []) for t in bucket["tests"].values()]
    for gain, adjusted in zip(family, holm([gain["p"] for gain in family])):
        gain["p_holm"], gain["significant"] = adjusted, adjusted < ALPHA
    return len(family)


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
        shared = sorted({r["training_shared_with"] for r in ok if r.get("training_shared_with")
                         and not r.get("curve_adapter")})
        taken = [r["curve_adapter"] for r in ok if r.get("curve_adapter")]
        if taken:  # seeds whose adapter a learning curve trained (the same training; its CPU time is there)
            summary["curve_adapters"] = taken
        if shared:
            summary["training_shared_with"] = ", ".join(shared)
        adopted = sorted({f"{r['adopted_from']['run']} of {r['adopted_from']['comparison']}"
                          for r in ok if r.get("adopted_from")})
        if adopted:
            summary["adopted_from"] = ", ".join(adopted)
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


def build_report(spec, records: list[dict], pending=(), target_counts: dict | None = None) -> dict:
    """Everything the outputs show, as plain data. ``pending``: (run, seed) pairs not finished yet,
    for a report written while the comparison is still under way; ``target_counts``: item token -> training
    rows with that target, for the breakdown by popularity (none without it)."""
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
    popularity = _popularity(spec, by_run, primary, target_counts, _comparisons(spec, by_run, gains, pairs), notes)
    family_size = _adjust(gains, pairs, popularity)
    return portable_paths({
        "comparison": spec.name, "primary_metric": primary, "dataset": spec.dataset, "seeds": spec.seeds, "reference": spec.reference,
        "source": spec.source, "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "metrics": metrics, "report_metrics": report_metrics, "alpha": ALPHA, "bootstrap_resamples": RESAMPLES,
        "p_value": f"two-sided paired sign-flip permutation test of the mean difference (exact up to {EXACT_MAX} "
                   f"non-zero differences, else {FLIPS} seeded random flips, p = (count + 1) / (flips + 1)); "
                   f"bootstrap for the 95% interval only; paired t-test p beside it",
        "permutation_flips": FLIPS, "multiple_testing": {
            "method": "holm", "family_size": family_size,
            "family": "every paired test in this report (all runs against the reference, the listed pairs, all "
                      "metrics, and each of those in every popularity bucket on the primary metric)"},
        "pairs": pairs, "overlap": _overlap(spec, by_run, report_metrics), "popularity": popularity,
        "same_test_rows": len(fingerprints) <= 1, "notes": notes, "runs": runs,
        "pending": [{"run": name, "seed": seed} for name, seed in pending],
        "records": [{k: v for k, v in r.items() if k != "test_hits"} for r in records],
    })
