"""A learning curve's report as Markdown: the points and baseline lines, the paired tests with a caption saying
how they are made, the precision at the last point. "±" is one standard error over users throughout."""

from __future__ import annotations

from .curve_schedule import stop_note
from .curve_stats import training_cpu_seconds, validation_estimate
from .report_format import fmt_p
from .stats import ALPHA, EXACT_MAX, FLIPS, stored_adjusted_p, stored_p


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _table_head(caption: str | None, columns: list[str]) -> list[str]:
    """A Markdown table's header lines, after a blank line and a caption when there is one."""
    head = [f"| {' | '.join(columns)} |", "|" + " --- |" * len(columns)]
    return head if caption is None else ["", caption, "", *head]


def _tests_caption(tests: list[dict], seeds: list) -> str:
    """How the curve's paired tests are made, the family their Holm p covers, and what they leave out."""
    family = sum(1 for t in tests if "p" in t)
    shared = any(t.get("same_measurement") for t in tests)
    kinds = ["every run against the reference at every point both reached"]
    if any(t["kind"] == "last vs first point" for t in tests):
        kinds.append("each run's last point against its first")
    if any(t["kind"] == "decoding vs its training run" for t in tests):
        kinds.append("each run that decodes another's adapter against that run at the point they share")
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


def _test_label(test: dict) -> str:
    """What a paired test compares, as the table's first column."""
    if test["kind"] == "last vs first point":
        return f"{test['run']}: {test['sequences']:,} vs {test['from_sequences']:,} sequences"
    label = f"{test['run']} vs {test['against']} at {test['sequences']:,}"
    return label + " (one adapter)" if test["kind"] == "decoding vs its training run" else label


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
                        "CPU time so far", "of it training"])[1:]
    for curve in curves:
        training = training_cpu_seconds(curve["points"], validation_estimate(curves))
        for p, train_s in zip(curve["points"], training):
            s = p["stats"]
            label = f"{p['sequences']:,}" if p["sequences"] else "0 (untrained)"
            if "measured_in" in p:
                label += f", {p['measured_in']}'s"
            about = "≈ " if p.get("cpu_estimated_s") else ""
            trained_about = "≈ " if p.get("cpu_estimated_s") or p.get("training_cpu_estimated") else ""
            if "trained_in" in p:
                label += f", {p['trained_in']}'s adapter"
            if "trained_sequences" in p:
                label += f" (trains {p['trained_sequences']:,})"
            rows.append(f"| {curve['run']} | {label} | {s['ndcg@10']['mean']:.4f} ± {s['ndcg@10']['se']:.4f} "
                        f"| {s['hit@10']['mean']:.4f} ± {s['hit@10']['se']:.4f} | {s['users']} | {p['tau']:.3f} "
                        f"| {about}{p['cpu_s'] / 60:.0f} min | "
                        f"{'-' if train_s is None else f'{trained_about}{train_s / 60:.0f} min'} |")
    for line in lines:
        valid = line.get("valid") or {}
        rows.append(f"| {line['run']} (best valid) | - | {valid.get('ndcg@10', float('nan')):.4f} "
                    f"| {valid.get('hit@10', float('nan')):.4f} | | | | |")
    if any("trained_sequences" in p for c in curves for p in c["points"]):
        rows += ["", ("Points are in the reference setting's sequences: a run with a cost (its training step's time "
                      "over the reference's) trains the count in brackets, so each point is about equal CPU time.")]
    if any("trained_in" in p for c in curves for p in c["points"]):
        rows += ["", ("A point with another run's adapter was measured on the adapter that run trained to that point "
                      "(the runs differ only in decoding keys): its CPU time is its own validations, its training "
                      "time that run's.")]
    notes = [c for c in curves if c.get("cpu_note")]
    if notes:
        rows += [""] + [f"≈ ({c['run']}): {c['cpu_note']}" for c in notes]
    stops = report.get("stopped") or []
    if stops:
        rows += [""] + [f"{stop_note(s['run'], s['at'], s['stop_when_flat_from'])}." for s in stops]
    tests = report.get("tests") or []
    if tests:
        rows += _table_head(_tests_caption(tests, seeds),
                            ["comparison", "metric", "difference (95% CI)", "p", "Holm p", "verdict",
                             "detectable (relative to the reference)"])
        for t in tests:
            what = _test_label(t)
            if t.get("same_measurement"):
                rows.append(f"| {what} | {t['metric']} | 0: one measurement ({t.get('measured_in', t['against'])}'s "
                            f"evaluation), not a test | - | - | - | - |")
                continue
            if "error" in t:
                rows.append(f"| {what} | {t['metric']} | not paired: {t['error']} | | | | |")
                continue
            relative = "" if t["detectable_relative"] is None else f" ({t['detectable_relative']:.0%})"
            holm_p = "-" if t.get("p_holm") is None else fmt_p(t["p_holm"])
            verdict = "significant" if stored_adjusted_p(t) < ALPHA else "not significant"
            rows.append(f"| {what} | {t['metric']} | {_signed(t['difference'])} ({_signed(t['ci'][0])} to "
                        f"{_signed(t['ci'][1])}) | {fmt_p(stored_p(t))} | {holm_p} | {verdict} "
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
