"""Benchmarks 1 and 2: one LLMMSL optimisation step against the reference-style step.

Same backbone, batch, LoRA weights and optimiser for both; the two losses (and tau after ATS) are
asserted equal first. Steps are interleaved in pairs (ours, ours, reference, reference, ...) so that
load from other processes on a shared machine hits both alike, and only the second step of each pair
is timed: in training a step follows a step of its own kind, whereas a step that follows the
reference's (which frees a [B, T, V] logits tensor and lets the heap shrink) faults its memory back in,
about 12 % of our step on a 2-core EPYC (2026-12-05). The median of the timed steps is reported. Peak
memory is measured in one more step of each, after the timed rounds.
Run twice: with the default backbone's head (vocabulary 49k) and with a randomly initialised
128,256-token head on the same body (Llama-3's vocabulary, the case the authors ran).
"""

from __future__ import annotations

import math

import torch

from .common import PeakMemory, log, median, memory_kind, sync, weights_restored, write_json
from .fixture import load_setting, training_batch
from .flops import batch_shape, step_flops
from .peak import matmul_peak
from .reference import DictTrie, ReferenceStep, build_masks

LLAMA3_VOCAB = 128_256


def our_loss(model, batch) -> torch.Tensor:
    """LLMMSL's loss as the trainer computes it (sum of terms / number of loss positions)."""
    total, count = model.loss_terms(batch)
    return total / max(count, 1)


class NoDropout:
    """Context manager: every dropout of the model at p = 0 (training mode, and so ATS, stays on).

    Our step runs the shared prompt prefix once, so it draws LoRA dropout masks in another
    order than the reference; without dropout the two compute the same function.
    """

    def __init__(self, model):
        self.layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]

    def __enter__(self):
        self.saved = [m.p for m in self.layers]
        for m in self.layers:
            m.p = 0.0
        return self

    def __exit__(self, *exc):
        for m, p in zip(self.layers, self.saved):
            m.p = p
        return False


def check_equal(model, batch, reference: ReferenceStep) -> dict:
    """Both losses and ATS updates on the same batch, weights and tau, in training mode without dropout;
    raises if they differ."""
    if bool(model.ats_pending.any()):  # statistics of earlier passes would enter this step's ATS update
        raise AssertionError("the model holds ATS statistics of an unfinished step; close it with end_ats_step() first")
    tau0 = model.tau
    with NoDropout(model):
        ours = float(our_loss(model, batch).detach())
        ours_estimate = model.end_ats_step()
        ours_tau, model.tau = model.tau, tau0
        reference.tau = tau0
        ref = float(reference.loss(batch).detach())
        ref_estimate = reference.end_step()
    ours_raw = ours_estimate.get("tau_hat_raw", math.nan)
    ref_raw = ref_estimate.raw if ref_estimate else math.nan
    tol = {"rel_tol": 1e-6, "abs_tol": 1e-6}  # the same computation up to fp32 summation order
    if (not math.isclose(ours, ref, **tol) or not math.isclose(ours_tau, reference.tau, **tol)
            or not math.isclose(ours_raw, ref_raw, **tol)):
        raise AssertionError(f"mismatch: ours loss {ours}, tau {ours_tau}, tau_hat {ours_raw}; "
                             f"reference loss {ref}, tau {reference.tau}, tau_hat {ref_raw}")
    return {"loss_ours": ours, "loss_reference": ref, "tau_after_ats": ours_tau, "tau_before": tau0,
            "tau_hat_raw_ours": ours_raw, "tau_hat_raw_reference": ref_raw}


def _step(optimizer, loss_fn, end_step):
    """One optimisation step as the trainer runs it: loss, backward, AdamW, then the step's ATS update."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    optimizer.step()
    end_step()


def timed_pairs(steps: dict, repeats: int, label: str | None = None) -> dict:
    """Seconds of each step in ``steps`` (name -> callable), ``repeats`` times after a warm-up round.

    Each round runs every step twice in a row and times the second: a step that follows the other
    kind's step pays for faulting its memory back in (see the module docstring)."""
    import time

    times = {k: [] for k in steps}
    for r in range(repeats + 1):  # the first round warms up both
        for name, fn in steps.items():
            fn()  # untimed
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if r:
                times[name].append(time.perf_counter() - t0)
        if label:
            log(f"{label}: round {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
                if r else f"{label}: warm-up done")
    return times


def compare(model, batch, repeats: int, peak_gflops: float, label: str) -> dict:
    """Equality check, interleaved timing and peak memory of both steps on ``batch``."""
    base = model.base
    vocab = base.get_output_embeddings().out_features
    dict_trie = DictTrie(model.prompts.sequences()[0])
    sync()
    import time
    start = time.perf_counter()
    masks = build_masks(model, batch, dict_trie, vocab)
    mask_build_s = time.perf_counter() - start
    reference = ReferenceStep(model, masks)
    tau_start = model.tau
    model.train()
    equal = check_equal(model, batch, reference)
    log(f"{label}: losses equal (ours {equal['loss_ours']:.6f}, reference {equal['loss_reference']:.6f})")

    with weights_restored(model) as optimizer:  # leave the shared model as we found it
        steps = {"ours": lambda: _step(optimizer, lambda: our_loss(model, batch), model.end_ats_step),
                 "reference": lambda: _step(optimizer, lambda: reference.loss(batch), reference.end_step)}
        times = timed_pairs(steps, repeats, label)
        memory = {k: [] for k in steps}
        for name, fn in steps.items():  # memory in rounds of its own: resetting the peak hands pages back, and
            with PeakMemory() as mem:   # faulting them in again would slow the timed steps
                fn()
                sync()
            memory[name].append((mem.peak, mem.delta))
    model.eval()
    model.tau = tau_start

    shape = batch_shape(model, batch)
    out = {"label": label, "vocab": vocab, **shape, **equal, "repeats": repeats,
           "mask_build_s_batch": mask_build_s,
           "mask_bytes_batch": sum(m.numel() for m in masks),
           "memory_kind": memory_kind()}
    for name in steps:
        t = median(times[name])
        flops = step_flops(base, shape, ours=name == "ours")
        executed = step_flops(base, shape, ours=name == "ours", executed=True)
        out[name] = {
            "step_s_median": t, "step_s_all": times[name],
            "tokens_per_s": shape["real_tokens"] / t, "samples_per_s": shape["samples"] / t,
            "step_gflop": flops / 1e9, "achieved_gflops": flops / t / 1e9,
            "fraction_of_peak": flops / t / 1e9 / peak_gflops,
            "executed_gflop": executed / 1e9, "executed_fraction_of_peak": executed / t / 1e9 / peak_gflops,
            "peak_memory_bytes": max(m[0] for m in memory[name]),
            "peak_memory_above_start_bytes": max(m[1] for m in memory[name]),
        }
    out["speedup_tokens_per_s"] = out["ours"]["tokens_per_s"] / out["reference"]["tokens_per_s"]
    log(f"{label}: ours {out['ours']['tokens_per_s']:.0f} tok/s, reference {out['reference']['tokens_per_s']:.0f} tok/s,"
        f" ratio {out['speedup_tokens_per_s']:.2f}x, ours at {100 * out['ours']['fraction_of_peak']:.0f}% of peak")
    return out


class Llama3Head:
    """Context manager: the same body with a randomly initialised 128,256-token LM head (frozen)."""

    def __init__(self, model, vocab: int = LLAMA3_VOCAB, seed: int = 0):
        self.base, self.vocab, self.seed = model.base, vocab, seed

    def __enter__(self):
        self.old = self.base.get_output_embeddings()
        generator = torch.Generator().manual_seed(self.seed)
        head = torch.nn.Linear(self.old.in_features, self.vocab, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.02)
        head.weight.requires_grad_(False)
        self.base.set_output_embeddings(head.to(self.old.weight.device, self.old.weight.dtype))
        return self

    def __exit__(self, *exc):
        self.base.set_output_embeddings(self.old)
        return False


def run(quick: bool = False) -> dict:
    """Both vocabularies; writes results/train_step.json and returns the summary rows."""
    _, train, _, model = load_setting()
    batch_size = 4 if quick else 8
    repeats = 1 if quick else 3
    batch = training_batch(train, batch_size)
    peak = matmul_peak(repeats=3 if quick else 5)
    default = compare(model, batch, repeats, peak["best_gflops"], "default head (49k)")
    with Llama3Head(model):
        llama3 = compare(model, batch, repeats, peak["best_gflops"], "Llama-3 head (128k)")
    figures = {"quick": quick, "matmul_peak": peak, "default_head": default, "llama3_head": llama3}
    write_json("train_step", figures)
    return figures


def summary(figures: dict) -> list[tuple]:
    """(what, ours, reference, ratio, target, met) rows for the suite's table."""
    d, l3 = figures["default_head"], figures["llama3_head"]
    mb = 1 / 2 ** 20
    return [
        ("train step tok/s, 49k head", d["ours"]["tokens_per_s"], d["reference"]["tokens_per_s"],
         d["speedup_tokens_per_s"], ">= 2.5x", d["speedup_tokens_per_s"] >= 2.5),
        ("train step % of matmul peak, 49k (model FLOPs)", 100 * d["ours"]["fraction_of_peak"],
         100 * d["reference"]["fraction_of_peak"], None, "report", None),
        ("train step % of matmul peak, 49k (executed FLOPs)", 100 * d["ours"]["executed_fraction_of_peak"],
         100 * d["reference"]["executed_fraction_of_peak"], None, ">= 75%",
         d["ours"]["executed_fraction_of_peak"] >= 0.75),
        ("train step tok/s, 128k head", l3["ours"]["tokens_per_s"], l3["reference"]["tokens_per_s"],
         l3["speedup_tokens_per_s"], ">= 3x", l3["speedup_tokens_per_s"] >= 3.0),
        ("train step peak mem above start MiB, 49k", d["ours"]["peak_memory_above_start_bytes"] * mb,
         d["reference"]["peak_memory_above_start_bytes"] * mb,
         d["reference"]["peak_memory_above_start_bytes"] / max(d["ours"]["peak_memory_above_start_bytes"], 1),
         "report", None),
        ("train step peak mem above start MiB, 128k", l3["ours"]["peak_memory_above_start_bytes"] * mb,
         l3["reference"]["peak_memory_above_start_bytes"] * mb,
         l3["reference"]["peak_memory_above_start_bytes"] / max(l3["ours"]["peak_memory_above_start_bytes"], 1),
         "report", None),
    ]
