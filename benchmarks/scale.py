"""Benchmark 4: how the costs grow with catalogue size and with history length.

* Trie build time and memory for 1k, 10k, 100k and 1M synthetic titles (random token strings with
  shared prefixes, 3 to 24 tokens plus an opening quote and EOS, over a 49k vocabulary). Memory
  is the build's peak RSS above what the input lists already hold, and the finished arrays.
* The trie work of one training step (path of 64 responses + valid sets) and of one beam-search
  step (valid sets of 100 beams, 10 users x 10 beams, three tokens deep), on each catalogue:
  flat or logarithmic, never quadratic, in the catalogue size.
* Our training-step time (batch of 4) for 5, 10, 20 and 50 history titles in the prompt.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .common import PeakMemory, log, median, timed, weights_restored, write_json
from .fixture import PROMPT_HISTORY, load_setting
from .train_step import our_loss

VOCAB, QUOTE, EOS = 49_152, 1, 2


def synthetic_titles(n: int, seed: int = 0) -> list[list[int]]:
    """``n`` distinct-ish token sequences: Zipf-distributed tokens, so early tokens are often shared."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 25, size=n)
    tokens = (rng.zipf(1.3, size=int(lengths.sum())) + 2) % VOCAB
    cuts = np.cumsum(lengths)[:-1]
    return [[QUOTE, *piece, EOS] for piece in np.split(tokens, cuts).__iter__()] if n else []


def _tensor_bytes(trie) -> int:
    return sum(v.numel() * v.element_size() for v in trie.__dict__.values() if isinstance(v, torch.Tensor))


def _trie_queries(trie, sequences, rng) -> dict:
    """Seconds of a training step's and a beam step's trie work on ``trie``."""
    from recbole_msl.core.trie import PAD  # noqa: F401  (documents the padded layout used below)

    picks = rng.choice(len(sequences), size=64, replace=len(sequences) < 64)
    rows = [sequences[i] for i in picks]
    width = max(len(r) for r in rows)
    resp = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    lengths = torch.tensor([len(r) for r in rows])

    def train_work():
        nodes = trie.path(resp, lengths)
        live = nodes[nodes >= 0]
        branch = live[trie.num_children(live) > 1]
        edges, _ = trie.children_padded(branch)
        return trie.edge_token[edges]

    nodes = trie.path(resp[:, :3], torch.full((64,), 3))[:, 2]  # nodes three tokens deep
    beam_nodes = nodes.repeat(2)[:100]

    def beam_work():
        edges, _ = trie.children_padded(beam_nodes)  # [100, D]
        return trie.node_leaf[edges + 1], trie.edge_token[edges]

    return {"train_step_trie_s": median(timed(train_work, 5)), "beam_step_trie_s": median(timed(beam_work, 5))}


def _mass_queries(trie, sequences) -> dict:
    """Seconds of the assistant's work on ``trie``: the depth-first leaf ranges (once per trie), the cumulative
    masses of 10 users (once per decoding batch, linear in the catalogue) and one beam step's lookups for 10 users
    x 10 beams (a fixed number of gathers, whatever the catalogue)."""
    from recbole_msl.core.subtree_mass import SubtreeRanges

    start = time.perf_counter()
    ranges = SubtreeRanges.of(trie)
    ranges_s = time.perf_counter() - start
    log_p = torch.randn(10, trie.item_leaf.numel(), generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    masses_s = median(timed(lambda: ranges.masses(log_p), 3))
    masses = ranges.masses(log_p)
    rng = np.random.default_rng(2)
    rows = [sequences[i] for i in rng.choice(len(sequences), size=100, replace=len(sequences) < 100)]
    resp = torch.tensor([r[:3] for r in rows])  # every synthetic title has at least 5 tokens
    nodes = trie.path(resp, torch.full((100,), 3))[:, 2]  # 100 beams three tokens deep, as a beam step holds them
    edges, valid = trie.children_padded(nodes)
    users = torch.arange(100) // 10  # 10 users x 10 beams
    lookup_s = median(timed(lambda: (masses.log_share(users, edges + 1), masses.log_best_share(users, nodes.unsqueeze(1))), 5))
    candidates = int(valid.sum())
    return {"ranges_s": ranges_s, "masses_s": masses_s, "lookup_s": lookup_s, "lookup_candidates": candidates,
            "lookup_ns_per_candidate": 1e9 * lookup_s / max(candidates, 1)}


def trie_scaling(sizes) -> list[dict]:
    from recbole_msl.core.trie import TokenTrie

    rng = np.random.default_rng(1)
    rows = []
    for n in sizes:
        sequences = synthetic_titles(n)
        items = [[i] for i in range(n)]
        with PeakMemory() as mem:
            start = time.perf_counter()
            trie = TokenTrie.build(sequences, items, n)
            build_s = time.perf_counter() - start
        row = {"titles": n, "tokens": sum(len(s) for s in sequences), "build_s": build_s,
               "build_peak_above_input_bytes": mem.delta, "trie_bytes": _tensor_bytes(trie),
               "nodes": trie.num_nodes, **_trie_queries(trie, sequences, rng), **_mass_queries(trie, sequences)}
        log(f"trie {n:>8} titles: build {build_s:.2f} s, peak +{mem.delta / 2 ** 20:.0f} MiB, "
            f"arrays {row['trie_bytes'] / 2 ** 20:.0f} MiB, train-step trie work {1e3 * row['train_step_trie_s']:.1f} ms,"
            f" beam-step trie work {1e3 * row['beam_step_trie_s']:.2f} ms; assistant: ranges {row['ranges_s']:.2f} s "
            f"once, masses {1e3 * row['masses_s']:.1f} ms per 10 users, lookup {1e3 * row['lookup_s']:.2f} ms "
            f"per beam step ({row['lookup_candidates']} candidates, {row['lookup_ns_per_candidate']:.0f} ns each)")
        rows.append(row)
        del sequences, items, trie
    return rows


def _long_history_batch(train, size: int, need: int):
    """``size`` training sequences with at least ``need`` history items (so every length is real)."""
    torch.manual_seed(0)
    for interaction in train:
        keep = (interaction["item_length"] >= need).nonzero().squeeze(1)
        if keep.numel() >= size:
            return interaction[keep[:size]]
    raise RuntimeError(f"no batch with {size} sequences of >= {need} items")


def history_scaling(lengths, batch_size: int, repeats: int) -> list[dict]:
    from .flops import batch_shape

    _, train, _, model = load_setting()
    batch = _long_history_batch(train, batch_size, max(lengths))
    tau0 = model.tau
    rows = []
    with weights_restored(model) as optimizer:
        def step():
            optimizer.zero_grad(set_to_none=True)
            our_loss(model, batch).backward()
            optimizer.step()

        model.train()
        try:
            for i, n in enumerate(lengths):
                model.opts.history_length = n
                shape = batch_shape(model, batch)
                t = median(timed(step, repeats, warmup=1 if i == 0 else 0))
                rows.append({"history_items": n, "real_tokens": shape["real_tokens"], "padded_tokens": shape["padded_tokens"],
                             "step_s": t, "tokens_per_s": shape["real_tokens"] / t})
                log(f"history {n:>2} items: {shape['real_tokens']} tokens, step {t:.2f} s, {rows[-1]['tokens_per_s']:.0f} tok/s")
        finally:
            model.opts.history_length = PROMPT_HISTORY
            model.eval()
            model.tau = tau0
    base = next(r for r in rows if r["history_items"] == PROMPT_HISTORY) if any(
        r["history_items"] == PROMPT_HISTORY for r in rows) else rows[0]
    for r in rows:
        r["time_vs_10_items"] = r["step_s"] / base["step_s"]
        r["tokens_vs_10_items"] = r["real_tokens"] / base["real_tokens"]
    return rows


def run(quick: bool = False) -> dict:
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    tries = trie_scaling(sizes)
    history = history_scaling([5, 10, 20] if quick else [5, 10, 20, 50], batch_size=2 if quick else 4,
                              repeats=1)
    figures = {"quick": quick, "trie": tries, "history": history}
    write_json("scale", figures)
    return figures


def summary(figures: dict) -> list[tuple]:
    rows = []
    for t in figures["trie"]:
        target = t["titles"] == 1_000_000
        peak_mb = t["build_peak_above_input_bytes"] / 1e6
        rows.append((f"trie build, {t['titles']:,} titles: s", t["build_s"], None, None,
                     "< 10 s" if target else "report", t["build_s"] < 10 if target else None))
        rows.append((f"trie build, {t['titles']:,} titles: peak MB", peak_mb, None, None,
                     "< 1000 MB" if target else "report", peak_mb < 1000 if target else None))
        rows.append((f"trie work per train / beam step, {t['titles']:,} titles: ms",
                     f"{1e3 * t['train_step_trie_s']:.1f} / {1e3 * t['beam_step_trie_s']:.2f}", None, None,
                     "flat in catalogue", None))
        if "lookup_s" in t:
            rows.append((f"assistant per decoding batch / beam step, {t['titles']:,} titles: ms",
                         f"{1e3 * t['masses_s']:.1f} / {1e3 * t['lookup_s']:.2f}", None, None,
                         "linear / flat in catalogue", None))
    lookups = [t["lookup_ns_per_candidate"] for t in figures["trie"] if "lookup_ns_per_candidate" in t]
    if len(lookups) > 1:
        growth = lookups[-1] / lookups[0]
        what = (f"assistant lookup ns per candidate, {figures['trie'][-1]['titles']:,} vs "
                f"{figures['trie'][0]['titles']:,} titles")
        rows.append((what, lookups[-1], lookups[0], growth, "no quadratic term (< 10x)", growth < 10))
    for h in figures["history"]:
        rows.append((f"train step, {h['history_items']} history items: s ({h['real_tokens']} tokens)", h["step_s"],
                     None, h["time_vs_10_items"], "report (ratio: vs 10 items)", None))
    return rows
