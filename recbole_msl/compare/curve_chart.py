"""A learning curve's chart: NDCG@10 and Hit@10 against training sequences, a band of one standard error over
users around each run, a dashed line for each baseline's best validation score."""

from __future__ import annotations

import numpy as np

from .curve_stats import CURVE_METRICS, training_cpu_seconds, validation_estimate
from .figures import pyplot, save_png


def _shared_label(curve: dict) -> str:
    return f"{curve['run']} ({curve['training_shared_with']}'s adapter)"


def curve_chart(curves: list[dict], lines: list[dict], path: str, title: str) -> None:
    """NDCG@10 and Hit@10 against training sequences, shaded bands of one standard error, lines for baselines."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(5.2 * len(CURVE_METRICS), 4.0), dpi=120)
    for ax, metric in zip(axes, CURVE_METRICS):
        for curve in curves:
            xs = np.array([p["sequences"] for p in curve["points"]])
            means = np.array([p["stats"][metric]["mean"] for p in curve["points"]])
            ses = np.array([p["stats"][metric]["se"] for p in curve["points"]])
            if curve.get("training_shared_with"):  # two decodings of points it did not train: no line between
                ax.errorbar(xs, means, yerr=ses, fmt="s", capsize=3, label=_shared_label(curve))
                continue
            (handle,) = ax.plot(xs, means, marker="o", label=curve["run"])
            ax.fill_between(xs, means - ses, means + ses, color=handle.get_color(), alpha=0.2)
        for line in lines:
            value = (line.get("valid") or {}).get(metric)
            if value is not None:
                ax.axhline(value, linestyle="--", color="grey", linewidth=1)
                ax.annotate(f"{line['run']} (best valid)", (0.01, value), xycoords=("axes fraction", "data"),
                            xytext=(0, 3), textcoords="offset points", fontsize=8, color="grey")
        positive = [p["sequences"] for c in curves for p in c["points"] if p["sequences"] > 0]
        symlog = any(p["sequences"] == 0 for c in curves for p in c["points"]) and positive
        if symlog:
            ax.set_xscale("symlog", base=2, linthresh=min(positive))  # linear from 0 (untrained) to the first point
        else:
            ax.set_xscale("log", base=2)
        if positive:  # a little room left of the first point (not the negative axis symlog autoscales to) and the
            ax.set_xlim(-0.1 * min(positive) if symlog else min(positive) / 1.25, max(positive) * 1.25)  # last inside
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
    save_png(fig, path)


def cpu_chart(groups: list[tuple[str | None, list[dict]]], path: str, title: str) -> bool:
    """NDCG@10 and Hit@10 against the CPU minutes of training alone (validations left out), for this curve's runs
    (``groups[0]``, label None) and published curves beside them (dashed, labelled with their comparison), each
    with a band of one standard error (a run that decodes another's adapter: points with error bars, no line);
    False (nothing written) when no point's training time is known."""
    series = []
    for name, curves in groups:
        estimate = validation_estimate(curves)
        for curve in curves:
            pairs = [(t / 60, p) for t, p in zip(training_cpu_seconds(curve["points"], estimate), curve["points"])
                     if t is not None]
            if not pairs:
                continue
            if curve.get("training_shared_with"):
                label, style = _shared_label(curve), "markers"
            else:
                label, style = curve["run"], "dashed" if name is not None else "solid"
            series.append((label if name is None else f"{label} ({name})", style, pairs))
    if not series:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(5.2 * len(CURVE_METRICS), 4.0), dpi=120)
    for ax, metric in zip(axes, CURVE_METRICS):
        for label, style, pairs in series:
            xs = np.array([x for x, _ in pairs])
            means = np.array([p["stats"][metric]["mean"] for _, p in pairs])
            ses = np.array([p["stats"][metric]["se"] for _, p in pairs])
            if style == "markers":
                ax.errorbar(xs, means, yerr=ses, fmt="s", capsize=3, label=label)
                continue
            (handle,) = ax.plot(xs, means, marker="o", linestyle="--" if style == "dashed" else "-", label=label)
            ax.fill_between(xs, means - ses, means + ses, color=handle.get_color(), alpha=0.15)
        ax.set_xlabel("CPU minutes of training (validations left out)")
        ax.set_ylabel(f"valid {metric.replace('ndcg', 'NDCG').replace('hit', 'Hit')}")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"{title}: at equal CPU time (bands: ±1 standard error over users)", fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_png(fig, path)
    return True
