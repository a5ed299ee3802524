"""The few lines a person reads at the end of a run; everything else is in the result file it names."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """Seconds as people read them: 42 s, 3 min 05 s, 2 h 10 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def metrics_table(valid: dict | None, test: dict | None) -> list[str]:
    names = list(test or valid or {})
    width = max([len(n) for n in names] + [6])
    lines = [f"  {'metric':<{width}}  {'valid':>7}  {'test':>7}"]
    for name in names:
        v, t = (valid or {}).get(name), (test or {}).get(name)
        lines.append(f"  {name:<{width}}  {'' if v is None else f'{v:.4f}':>7}  {'' if t is None else f'{t:.4f}':>7}")
    return lines


def tau_lines(trace: list[dict]) -> list[str]:
    """tau's first/last/min/max over the optimizer steps and, under ATS, where the clamp bound the estimate."""
    if not trace:
        return []
    taus = [r["tau"] for r in trace]
    line = (f"tau over {len(trace)} steps: first {taus[0]:.3f}, last {taus[-1]:.3f}, min {min(taus):.3f}, "
            f"max {max(taus):.3f}")
    raw = [(r["tau_hat_raw"], r["tau_hat"]) for r in trace if "tau_hat_raw" in r]
    if not raw:
        return [line + " (fixed)"]
    bound = sum(abs(r - c) > 1e-12 for r, c in raw)
    return [line + f"; ATS estimate before the clamp {min(r for r, _ in raw):.3f} to {max(r for r, _ in raw):.3f}, "
                   f"clamped on {bound} of {len(raw)} steps"]


def example_lines(examples: list[dict]) -> list[str]:
    lines = []
    for k, example in enumerate(examples, 1):
        history = ", ".join(f'"{t}"' for t in example["history"])
        lines.append(f"  user {k}: ... {history}")
        lines.append(f'    next: "{example["target"]}"')
        for rank, top in enumerate(example["top"], 1):
            mark = "  <- the next item" if top["hit"] else ""
            lines.append(f'    {rank}. {top["score"]:8.3f}  "{top["title"]}"{mark}')
    return lines


def at_grid_edge(weights: list[float], kept: float) -> bool:
    """True when the weight kept on validation is the largest (non-zero) of a grid of several: the optimum may lie
    beyond what was tried, which a reader of the kept weight should be told."""
    return len(weights) > 1 and kept > 0 and kept == max(weights)


def assistant_lines(assistant: dict | None, metric: str) -> list[str]:
    """Which assistant guided the search, the weight kept on validation from the grid, and the assistant's own
    figures (and, ranked alone through the trie, how much of its own top k the search keeps)."""
    if not assistant:
        return []
    grid = ", ".join(f"{g['assistant_weight']:g}: {g['score']:.4f}" for g in assistant.get("grid") or [])
    source = (f"trained on the same split in {duration(assistant['train_s'])}, included in training's time"
              if assistant.get("train_s") is not None else str(assistant.get("source")))
    first = (f"ranked with the assistant {assistant['model']} ({source}): assistant_weight {assistant['weight']:g} "
             f"kept on validation {metric} ({grid})")
    lines = [first]
    if at_grid_edge([g["assistant_weight"] for g in assistant.get("grid") or []], assistant["weight"]):
        lines.append(f"  {assistant['weight']:g} is the grid's largest weight: a larger one may rank better on "
                     f"validation (add it to assistant_weight)")
    own = (assistant.get("test") or {}).get(metric)
    if own is not None:
        lines.append(f"  the assistant alone (RecBole's full ranking): valid {metric} "
                     f"{(assistant.get('valid') or {}).get(metric, float('nan')):.4f}, test {own:.4f}")
    overlap = assistant.get("search_overlap")
    if overlap:
        lines.append(f"  the search through the trie keeps {overlap['mean'] * 100:.1f}% ± {overlap['se'] * 100:.1f}% "
                     f"of its own top {overlap['k']} ({overlap['rows']} test rows)")
    return lines


def run_summary(result: dict) -> str:
    t = result["timings"]
    head = (f"{result['model']} on {result['dataset']}: best validation {result['valid_metric']} "
            f"{result['best_valid_score']:.4f}; test on {result['test_rows']} rows")
    lines = [head, *metrics_table(result["best_valid_result"], result["test_result"])]
    lines.append(f"time: data {duration(t['data_s'])}, model {duration(t['model_load_s'])}, "
                 f"training {duration(t['fit_s'] - t['valid_s'])}, validation {duration(t['valid_s'])}, "
                 f"test {duration(t['test_s'])}")
    lines += tau_lines(result.get("tau_trace") or [])
    lines += assistant_lines(result.get("assistant"), result["valid_metric"])
    if result.get("examples"):
        lines.append(f"what it recommends to {len(result['examples'])} test users (last titles of the history, "
                     f"the true next item, the top {len(result['examples'][0]['top'])}):")
        lines += example_lines(result["examples"])
    if result.get("saved_model_file"):
        lines.append(f"checkpoint: {result['saved_model_file']}")
    lines.append(f"everything (tau trace, timings, metrics): {result['result_file']}")
    return "\n".join(lines)
