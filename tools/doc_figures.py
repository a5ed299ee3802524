"""The documentation's method figures, drawn from committed data: ``python tools/doc_figures.py``.

- ``docs/figures/tau.png``: tau and the raw ATS estimate over the optimizer steps of the three MSL + ATS runs of
  the ml-100k ``cpu-long`` comparison (their run records in ``docs/results/ml-100k-cpu-long/runs/``).
- ``docs/figures/trie.png``: a token trie of five titles and, at one step, which tokens the masked softmax keeps.
- ``docs/figures/packed.png``: one packed training sequence of ``train_format: sequence`` as the default tokenizer
  writes it (three ml-100k titles), and which tokens are targets.
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


def packed_figure() -> str:
    """The token ids of one chunk as ``PromptBuilder.pack`` builds them, each token a box: context, separator or
    target (a target title's tokens and the comma that ends it)."""
    from transformers import AutoTokenizer

    from recbole_msl.lm.backbone import default_llm_path
    from recbole_msl.lm.prompt import DEFAULT_TEMPLATE, PromptBuilder

    folder, name = os.path.split(default_llm_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    titles = [None, "Toy Story", "Fargo", "Heat"]
    import yaml

    with open(os.path.join(ROOT, "properties", "model", "LLMMSL.yaml"), encoding="utf-8") as f:
        shipped = yaml.safe_load(f)
    prompts = PromptBuilder(tokenizer, titles, DEFAULT_TEMPLATE, shipped["prompt_instruction"],
                            shipped["prompt_input"], 2048, train_format="sequence")
    packed = prompts.pack([1, 2, 3], 1)
    target = {p for item, start in zip(packed.items, packed.starts)
              for p in range(start, start + len(prompts.response(item)))}
    head = len(prompts.head_ids)
    cells = [(f"template head\n({head} tokens)", "context")]
    for position in range(head, len(packed.ids)):
        text = tokenizer.decode([packed.ids[position]]).replace(" ", "\u2423")
        kind = "target" if position in target else ("context" if position < packed.starts[0] else "separator")
        cells.append((text, kind))
    colours = {"context": "#d9d9d9", "separator": "#f2f2f2", "target": "#9ecae1"}
    fig, ax = plt.subplots(figsize=(9.5, 1.9), dpi=120)
    x = 0.0
    for text, kind in cells:
        width = 2.6 if "\n" in text else max(0.55, 0.16 * len(text) + 0.3)
        ax.add_patch(plt.Rectangle((x, 0), width, 1, facecolor=colours[kind], edgecolor="0.3", lw=0.8))
        ax.text(x + width / 2, 0.5, text, ha="center", va="center", fontsize=7 if "\n" in text else 9,
                family="monospace")
        x += width + 0.08
    shown = {kind for _, kind in cells}
    for label, kind in (("context only", "context"), ("separator (no loss)", "separator"),
                        ("target: MSL/LML at each token, the comma included", "target")):
        if kind not in shown:
            continue
        ax.add_patch(plt.Rectangle((0, 0), 0, 0, facecolor=colours[kind], edgecolor="0.3", label=label))
    ax.set_xlim(-0.1, x)
    ax.set_ylim(-0.1, 1.1)
    ax.axis("off")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=8, frameon=False)
    ax.set_title('one chunk of a user\'s titles, sequence_min_history 1: "Toy Story" is context, "Fargo" and "Heat" '
                 'are targets, each ended by the comma', fontsize=9)
    fig.tight_layout()
    path = os.path.join(OUT, "packed.png")
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for made in (tau_figure(), trie_figure(), packed_figure()):
        print(made)
