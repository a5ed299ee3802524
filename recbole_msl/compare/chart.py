"""A grouped bar chart of a comparison: one group per metric, one bar per run, error bars of ± one sample std
over seeds (the spread the report's "±" means), none for a single seed."""

from __future__ import annotations

import numpy as np

from .figures import pyplot, save_png
from .report import pretty_metric
from .report_format import tested_rows


def write_chart(report: dict, path: str) -> bool:
    """Draw the report's metrics per run into ``path`` (PNG, atomically); False if no run finished."""
    plt = pyplot()
    runs = [r for r in report["runs"] if r.get("test")]
    metrics = report["report_metrics"]
    if not runs or not metrics:
        return False
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(metrics) * max(1, len(runs)) * 0.45 + 2), 4.2), dpi=120)
    x = np.arange(len(metrics))
    top = 0.0
    for i, run in enumerate(runs):
        means = [run["test"][m]["mean"] for m in metrics]
        stds = [run["test"][m]["std"] for m in metrics]
        many = len(run["test"][metrics[0]]["values"]) > 1
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, means, width * 0.92, label=run["name"] + (" (reference)" if run["name"] == report.get("reference") else ""),
                      yerr=stds if many else None, capsize=3 if many else 0,
                      hatch="//" if run["name"] == report.get("reference") else None, edgecolor="white")
        for bar, mean, std in zip(bars, means, stds):
            height = mean + (std if many else 0)
            top = max(top, height)
            ax.annotate(f"{mean:.3f}", (bar.get_x() + bar.get_width() / 2, height), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [pretty_metric(m) for m in metrics])
    ax.set_ylim(0, top * 1.18 if top > 0 else 1)
    ax.set_ylabel("test score")
    note = seed_note(report["seeds"], [len(run["seeds_ok"]) for run in runs])
    rows, _ = tested_rows(report)
    ax.set_title(f"{report['comparison']}: {report['dataset']}, {note}" + (f", {rows}" if rows else ""),
                 fontsize=10)
    ax.legend(fontsize=8, frameon=False, ncols=min(len(runs), 4))
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    return True


def seed_note(seeds: list, finished: list[int]) -> str:
    """What the bars average, from the seeds each run actually finished (a partial report or a
    one-seed run must not be labelled with the comparison's full seed list)."""
    counts = sorted(set(finished))
    if counts == [1]:
        return f"seed {seeds[0]}" if len(seeds) == 1 else "one seed per run"
    if len(counts) == 1:
        return f"mean ± sample std over {counts[0]} seeds"
    return f"mean ± sample std over each run's seeds ({counts[0]} to {counts[-1]}" + ("; one seed: no error bar)" if counts[0] == 1 else ")")
