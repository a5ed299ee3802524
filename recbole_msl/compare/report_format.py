"""A comparison's report as text: the Markdown page (tables, captions, the overlap of hits) and the CSV.

``±`` in these reports is the sample standard deviation over the seeds a run finished; a p-value at the floor
of its random sign flips is written as an upper bound ("<").
"""

from __future__ import annotations

import csv
import io
import json
import math

from ..summary import at_grid_edge
from .report import pretty_metric
from .stats import EXACT_MAX, stored_adjusted_p, stored_p


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
    for taken in summary.get("curve_adapters") or []:
        cpu = taken.get("training_cpu_s")
        spent = "" if cpu is None else f", {cpu / 60:,.0f} training CPU-min there"
        parts.append(f"ok (seed {taken['seed']}: the final adapter of {taken['run']} in {taken['comparison']}, "
                     f"trained exactly as this run trains{spent}; not trained again here)")
    if summary.get("adopted_from"):
        parts.append(f"ok (the records of {summary['adopted_from']}: same settings, read from docs/results/)")
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
    lines += _popularity_lines(report, unit)
    for note in report["notes"]:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def _popularity_lines(report: dict, unit: str) -> list[str]:
    """By target popularity: each bucket's rows, each run's mean ± standard error there, and the paired tests."""
    popularity = report.get("popularity") or {}
    buckets = popularity.get("buckets") or []
    if not buckets:
        return []
    metric, (low, high) = pretty_metric(popularity["metric"]), popularity["edges"]
    runs = list(buckets[0]["runs"])
    split = (f"tail <= {low:g} < torso <= {high:g} < head" if low != high else
             f"both tertiles are {low:g}, so tail <= {low:g} < head and no torso")
    caption = (f"By target popularity: the test {unit} split at the tertiles of their targets' training counts "
               f"(how many training rows have that item as their target: {split}; ties stay below). {metric} per "
               f"bucket, each run's per-{unit[:-1]} value averaged over its seeds, ± one standard error over the "
               f"bucket's {unit} (not a spread over seeds).")
    lines = ["", caption, "", "| Bucket | " + unit.capitalize() + " | Training counts | "
             + " | ".join(runs) + " |", "|" + "|".join(["---"] * (3 + len(runs))) + "|"]
    for bucket in buckets:
        cells = [bucket["bucket"], str(bucket["rows"]), f"{bucket['min_count']} to {bucket['max_count']}"]
        cells += [f"{bucket['runs'][r]['mean']:.4f} ± {bucket['runs'][r]['se']:.4f}" for r in runs]
        lines.append("| " + " | ".join(cells) + " |")
    pairs = [key for bucket in buckets for key in bucket["tests"]]
    pairs = list(dict.fromkeys(pairs))
    if pairs:
        lines += ["", (f"Paired tests of {metric} inside each bucket (the first run's gain over the second; the same "
                       f"test as above, in the same Holm family of {_family_size(report)}; 'detectable' is larger "
                       f"than over all {unit}: a bucket holds only part of them)."), "",
                  "| Pair | " + " | ".join(b["bucket"] for b in buckets) + " |",
                  "|" + "|".join(["---"] * (1 + len(buckets))) + "|"]
        for pair in pairs:
            lines.append("| " + " | ".join([pair] + [fmt_gain(b["tests"].get(pair)) for b in buckets]) + " |")
    return lines


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
             (f"| Guided run | LLM alone | Compared with | Seed | {unit.capitalize()} | Hits only the LLM alone had | "
              f"Kept by the guided search | Compared run's hits | Lost by the guided search | New | "
              f"Guided - compared hits |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row["guided"], row["llm"], row["baseline"]), []).append(row)
    for (guided, llm, baseline), entries in groups.items():
        for row in entries:
            low, high = row["kept_ci"]
            interval = "" if math.isnan(low) else f" ({low * 100:.0f}% to {high * 100:.0f}%)"
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
