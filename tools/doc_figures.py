"""The documentation's two method figures, drawn from committed data: ``python tools/doc_figures.py``.

- ``docs/figures/tau.png``: tau and the raw ATS estimate over the optimizer steps of the three MSL + ATS runs of
  the ml-100k ``cpu-long`` comparison (their run records in ``docs/results/ml-100k-cpu-long/runs/``).
- ``docs/figures/trie.png``: a token trie of five titles and, at one step, which tokens the masked softmax keeps.
"""

from __future__ import annotations

import glob
import json
import os

import matplotlib

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "figures")


def tau_figure() -> str:
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=120)
    for path in sorted(glob.glob(os.path.join(ROOT, "docs", "results", "ml-100k-cpu-long", "runs", "msl-ats--seed*.json"))):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        trace = record.get("tau_trace") or []
        steps = [r["step"] for r in trace]
        line = ax.plot(steps, [r["tau"] for r in trace], lw=2, label=f"tau, seed {record['seed']}")[0]
        ax.plot(steps, [r["tau_hat_raw"] for r in trace], lw=1, ls="--", color=line.get_color(),
                label=f"raw ATS estimate, seed {record['seed']}")
    ax.axhspan(1.5, 5.0, color="0.92", zorder=0, label="clamp [1.5, 5.0]")
    ax.set_xlabel("optimizer step (cpu-long: 80 steps of 32 sequences)")
    ax.set_ylabel("temperature")
    ax.set_title("ATS, ml-100k, SmolLM2-135M: the estimate stays under the clamp, tau at its floor", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="center right")
    fig.tight_layout()
    path = os.path.join(OUT, "tau.png")
    fig.savefig(path)
    plt.close(fig)
    return path


def trie_figure() -> str:
    """Five titles as token paths; at the node after '"Star', the valid next tokens are the masked softmax's."""
    titles = [['"', "Star", " Wars", '"', "EOS"], ['"', "Star", " Trek", '"', "EOS"], ['"', "Star", "gate", '"', "EOS"],
              ['"', "Heat", '"', "EOS"], ['"', "Fargo", '"', "EOS"]]
    nodes, edges = {(): (0.0, 0.0)}, []
    columns: dict[int, int] = {}
    for title in titles:
        for depth in range(1, len(title) + 1):
            prefix = tuple(title[:depth])
            if prefix not in nodes:
                row = columns.get(depth, 0)
                columns[depth] = row + 1
                nodes[prefix] = (depth * 1.6, -row * 1.0)
                edges.append((prefix[:-1], prefix))
    fig, ax = plt.subplots(figsize=(9, 3.8), dpi=120)
    here = ('"', "Star")
    for parent, child in edges:
        (x0, y0), (x1, y1) = nodes[parent], nodes[child]
        valid = parent == here
        ax.plot([x0, x1], [y0, y1], color="tab:green" if valid else "0.6", lw=2.5 if valid else 1, zorder=1)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, child[-1], ha="center", fontsize=9,
                color="tab:green" if valid else "0.25", fontweight="bold" if valid else "normal")
    for prefix, (x, y) in nodes.items():
        ax.scatter([x], [y], s=40, color="tab:blue" if prefix == here else "0.3", zorder=2)
    ax.text(0, -0.4, "root", ha="center", fontsize=8)
    ax.text(nodes[here][0], nodes[here][1] - 0.45, 'after "Star', ha="center", fontsize=8, color="tab:blue")
    ax.set_title("Title trie: after the prefix \"Star the masked softmax keeps only ' Wars', ' Trek' and 'gate' "
                 "(green); LML's softmax is over all 49k tokens", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    path = os.path.join(OUT, "trie.png")
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for made in (tau_figure(), trie_figure()):
        print(made)
