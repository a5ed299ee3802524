"""Training targets per second: ``train_format: sequence`` against the paper's window format.

Both formats train LLMMSL (MSL + ATS, LoRA q/v r 8) on ml-100k with the default backbone. The window format
takes the CPU profile's micro-batch of 8 windows (10 history titles each, one target title per window); the
sequence format takes 2 chunks of up to 50 titles (every title after the first a target). Steps are
interleaved in pairs (window, window, sequence, sequence, ...) and the second of each pair is timed, so
load from other processes hits both alike; the ratio of the medians is the figure. Peak memory is the
process's peak RSS above its level before the step (other models stay loaded in the process), during one step
on the longest chunk (the 50 longest titles), and during one step of LoRA on every linear layer (all-linear)
and of full fine-tuning on that chunk, against one step of the window format.

The capacity settings' step times (LoRA all-linear at r 8 and r 64, full fine-tuning) are measured against
LoRA q/v r 8 on the same 2 chunks, steps interleaved in pairs as above: their ratios say how many chunks each
setting trains in the CPU time of q/v's, which is how a settings search at equal CPU time sizes its runs.
"""

from __future__ import annotations

import contextlib
import time

import torch

from recbole_msl.lm.common_prefix import common_prefix_length

from .common import PeakMemory, log, median, memory_kind, write_json
from .fixture import drop_setting, load_setting, training_batch

WINDOWS_PER_STEP = 8  # the CPU profile's micro_batch_size
CHUNKS_PER_STEP = 2
CHUNK_TITLES = 50  # MAX_ITEM_LIST_LENGTH of the sequence setting
CAPACITY = {  # name -> options, each timed against LoRA q/v r 8 (the default)
    "lora_all_linear_r8": {"lora_target_modules": "all-linear"},
    "lora_all_linear_r64": {"lora_target_modules": "all-linear", "lora_r": 64, "lora_alpha": 128},
    "full": {"llm_finetune": "full"},
}


def _step(model, batch, optimizer) -> float:
    """One optimisation step (forward, backward, AdamW) as the trainer runs it; seconds."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    total, count = model.loss_terms(batch)
    (total / max(count, 1)).backward()
    optimizer.step()
    model.end_ats_step()
    return time.perf_counter() - start


def _computed(rows: list[list[int]]) -> int:
    """Tokens the step runs: every row's, with the prefix the rows share run once (share_prompt_prefix)."""
    return sum(map(len, rows)) - (len(rows) - 1) * common_prefix_length(rows)


def _window_load(model, batch) -> tuple[int, int, int]:
    """(targets, tokens, tokens computed) of a window batch: one target per window; prompt + response tokens."""
    histories, items = model._histories(batch), batch[model.POS_ITEM_ID].tolist()
    rows = [model.prompts.prompt(h) + model.prompts.response(i) for h, i in zip(histories, items)]
    return len(items), sum(map(len, rows)), _computed([r[:-1] for r in rows]) + len(rows)


def _sequence_load(model, chunks) -> tuple[int, int, int]:
    packed = [model.prompts.pack(c, model.opts.sequence_min_history) for c in chunks]
    rows = [p.ids for p in packed]
    return sum(len(p.items) for p in packed), sum(map(len, rows)), _computed([r[:-1] for r in rows]) + len(rows)


def _longest_chunk(model) -> list[int]:
    """A chunk of the catalogue's CHUNK_TITLES titles with the most tokens (the worst case of one chunk)."""
    items = [i for i, ids in enumerate(model.prompts.title_ids) if ids is not None]
    return sorted(items, key=lambda i: -len(model.prompts.title_ids[i]))[:CHUNK_TITLES]


def _trainable(model) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


@contextlib.contextmanager
def _weights_kept(*models):
    """Steps taken inside change no trainable weight of ``models``: a benchmark times steps, it does not train."""
    saved = [[p.detach().clone() for p in _trainable(m)] for m in models]
    try:
        yield
    finally:
        with torch.no_grad():
            for model, kept in zip(models, saved):
                for p, s in zip(_trainable(model), kept):
                    p.copy_(s)


def _interleaved_steps(settings: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each setting's timed steps; ``settings`` maps a name to (model, batch). Every round each setting
    takes an untimed step (it follows the other setting's) and a timed one, so load from other processes hits all
    alike."""
    optimizers = {name: torch.optim.AdamW(_trainable(m), lr=1e-4) for name, (m, _) in settings.items()}
    times = {name: [] for name in settings}
    with _weights_kept(*(m for m, _ in settings.values())):
        for m, _ in settings.values():
            m.train()
        for r in range(rounds):
            for name, (m, batch) in settings.items():
                _step(m, batch, optimizers[name])
                times[name].append(_step(m, batch, optimizers[name]))
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{name} {t[-1]:.2f} s" for name, t in times.items()))
    return times


def _peak(model, batch) -> int:
    optimizer = torch.optim.AdamW(_trainable(model), lr=1e-4)
    model.train()
    with _weights_kept(model), PeakMemory() as peak:
        _step(model, batch, optimizer)
    return peak.delta  # above the step's start: other benchmarks' models stay loaded in this process


def _examples(model, train, config):
    from recbole_msl.trainer.sequence_batches import SequenceExamples

    return SequenceExamples(train._dataset, model, int(config["seed"]))


def run(quick: bool = False) -> dict:
    rounds = 1 if quick else 4
    _, train, _, window = load_setting()
    config, strain, _, sequence = load_setting(train_format="sequence")
    sequence.opts.history_length = CHUNK_TITLES
    examples = _examples(sequence, strain, config)
    chunks = examples.chunks
    full = [c for c in chunks if len(c) == CHUNK_TITLES]
    windows = training_batch(train, WINDOWS_PER_STEP)
    batch = full[:CHUNKS_PER_STEP]
    w_targets, w_tokens, w_computed = _window_load(window, windows)
    s_targets, s_tokens, s_computed = _sequence_load(sequence, batch)
    log(f"window: {w_targets} targets in {w_tokens} tokens ({w_computed} computed); sequence: {s_targets} targets "
        f"in {s_tokens} tokens ({s_computed} computed) "
        f"({len(chunks)} chunks, {examples.targets} targets per pass over ml-100k)")
    times = _interleaved_steps({"window": (window, windows), "sequence": (sequence, batch)}, rounds)
    w_s, s_s = median(times["window"]), median(times["sequence"])
    figures = {
        "window": {"step_s": w_s, "targets": w_targets, "tokens": w_tokens, "targets_per_s": w_targets / w_s,
                   "tokens_per_s": w_tokens / w_s, "computed_tokens": w_computed,
                   "computed_tokens_per_s": w_computed / w_s, "steps_timed": times["window"]},
        "sequence": {"step_s": s_s, "targets": s_targets, "tokens": s_tokens, "targets_per_s": s_targets / s_s,
                     "tokens_per_s": s_tokens / s_s, "computed_tokens": s_computed,
                     "computed_tokens_per_s": s_computed / s_s, "steps_timed": times["sequence"], "chunks": len(chunks),
                     "targets_per_pass": examples.targets},
        "memory_kind": memory_kind(),
    }
    longest = [_longest_chunk(sequence)]
    figures["peak_bytes"] = {"window_step": _peak(window, windows), "longest_chunk_lora_qv": _peak(sequence, longest)}
    if not quick:
        for name, extra in (("longest_chunk_lora_all_linear", CAPACITY["lora_all_linear_r8"]),
                            ("longest_chunk_full", CAPACITY["full"])):
            try:
                _, _, _, model = load_setting(train_format="sequence", **extra)
            except Exception as err:  # noqa: BLE001 - an option this version lacks: say so, measure the rest
                log(f"{name}: not measured ({type(err).__name__}: {err})")
                continue
            model.opts.history_length = CHUNK_TITLES
            figures["peak_bytes"][name] = _peak(model, longest)
        figures["capacity_step_s"] = _capacity_steps(sequence, batch, rounds)
    write_json("sequence_format", figures)
    return figures


def _capacity_steps(base, batch, rounds: int) -> dict:
    """Median step seconds of each capacity setting and of LoRA q/v r 8 in the same pairs of rounds."""
    out = {}
    for name, extra in CAPACITY.items():
        _, _, _, model = load_setting(train_format="sequence", **extra)
        model.opts.history_length = CHUNK_TITLES
        times = _interleaved_steps({"lora_qv_r8": (base, batch), name: (model, batch)}, rounds)
        base_s, step_s = median(times["lora_qv_r8"]), median(times[name])
        out[name] = {"step_s": step_s, "base_step_s": base_s, "ratio": step_s / base_s,
                     "trainable": sum(p.numel() for p in _trainable(model))}
        log(f"{name}: {step_s:.2f} s per step against LoRA q/v r 8's {base_s:.2f} s ({step_s / base_s:.2f}x)")
        del model
        drop_setting(train_format="sequence", **extra)
    return out


def summary(f: dict) -> list[tuple]:
    w, s = f["window"], f["sequence"]
    target_ratio = s["targets_per_s"] / w["targets_per_s"]
    token_ratio = s["tokens_per_s"] / w["tokens_per_s"]
    mib = 1 << 20
    rows = [
        ("training targets per second, sequence vs window (ml-100k, 135M)", s["targets_per_s"], w["targets_per_s"],
         target_ratio, ">= 10x", target_ratio >= 10),
        ("training tokens per second (every token of the examples)", s["tokens_per_s"], w["tokens_per_s"],
         token_ratio, "within 10%", token_ratio >= 0.9),
    ]
    if "computed_tokens_per_s" in s:  # the window batch runs its shared template once: fewer tokens than it reads
        computed_ratio = s["computed_tokens_per_s"] / w["computed_tokens_per_s"]
        rows.append(("training tokens per second (tokens computed, shared prefix once)", s["computed_tokens_per_s"],
                     w["computed_tokens_per_s"], computed_ratio, "within 10%", computed_ratio >= 0.9))
    peaks = f["peak_bytes"]
    for key, label in (("longest_chunk_lora_qv", "step peak RSS above start MiB, longest chunk, LoRA q/v r 8"),
                       ("longest_chunk_lora_all_linear", "step peak RSS above start MiB, longest chunk, LoRA all-linear"),
                       ("longest_chunk_full", "step peak RSS above start MiB, longest chunk, full fine-tuning")):
        if key in peaks:
            rows.append((label, peaks[key] / mib, peaks["window_step"] / mib, peaks[key] / peaks["window_step"],
                         "", None))
    for name, c in f.get("capacity_step_s", {}).items():
        rows.append((f"sequence step seconds, {name.replace('_', ' ')} vs LoRA q/v r 8 (equal-CPU chunk ratio)",
                     c["step_s"], c["base_step_s"], c["ratio"], "", None))
    return rows
