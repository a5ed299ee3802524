"""The two measures: train-step tokens/s and MFU against the reference-style step (M1), ranking users/s against
Hugging Face's constrained generate (M2)."""

from __future__ import annotations

import time

import torch

from ..common import PeakMemory, median, memory_kind, sync, weights_restored
from ..fixture import valid_users
from .backbones import _e
from .settings import TOL


# ------------------------------------------------------------------ measures
def measure_train_step(model, batch, repeats: int, peak_gflops: float, loss_tol: float):
    """train_step.compare with a dtype-aware equality check: timed steps in pairs, peak memory, MFU."""
    from ..flops import batch_shape, step_flops
    from ..reference import DictTrie, ReferenceStep, build_masks
    from ..train_step import NoDropout, _step, our_loss, timed_pairs

    base = model.base
    vocab = base.get_output_embeddings().out_features
    masks = build_masks(model, batch, DictTrie(model.prompts.sequences()[0]), vocab)
    reference = ReferenceStep(model, masks)
    model.train()
    tau0 = model.tau
    with NoDropout(model):
        ours_loss = float(our_loss(model, batch).detach())
        model.end_ats_step()
        model.tau = reference.tau = tau0
        ref_loss = float(reference.loss(batch).detach())
        reference.end_step()
    model.tau = reference.tau = tau0
    rel = abs(ours_loss - ref_loss) / abs(ref_loss)

    with weights_restored(model) as optimizer:
        steps = {"ours": lambda: _step(optimizer, lambda: our_loss(model, batch), model.end_ats_step),
                 "reference": lambda: _step(optimizer, lambda: reference.loss(batch), reference.end_step)}
        times = timed_pairs(steps, repeats)
        memory = {}
        for name, fn in steps.items():
            with PeakMemory() as mem:
                fn()
                sync()
            memory[name] = (mem.peak, mem.delta)
    model.eval()
    model.tau = tau0
    model.zero_grad(set_to_none=True)

    shape = batch_shape(model, batch)
    out = {"dtype": str(next(base.parameters()).dtype), **shape, "loss_ours": ours_loss, "loss_reference": ref_loss,
           "loss_rel": rel, "loss_tolerance": loss_tol, "repeats": repeats, "memory_kind": memory_kind(),
           "peak_gflops": peak_gflops}
    for name in steps:
        t = median(times[name])
        flops = step_flops(base, shape, ours=name == "ours")
        out[name] = {"step_s_median": t, "step_s_all": times[name], "tokens_per_s": shape["real_tokens"] / t,
                     "step_gflop": flops / 1e9, "mfu": flops / t / 1e9 / peak_gflops,
                     "executed_fraction_of_peak": step_flops(base, shape, ours=name == "ours", executed=True)
                     / t / 1e9 / peak_gflops,
                     "peak_memory_bytes": memory[name][0], "peak_memory_above_start_bytes": memory[name][1]}
    out["speedup_tokens_per_s"] = out["ours"]["tokens_per_s"] / out["reference"]["tokens_per_s"]
    ok = rel <= loss_tol
    detail = (f"{shape['samples']} x ~{shape['real_tokens'] // shape['samples']} tokens, {out['dtype'][6:]}: ours "
              f"{out['ours']['tokens_per_s']:,.0f} tok/s (MFU {100 * out['ours']['mfu']:.1f}%), reference "
              f"{out['reference']['tokens_per_s']:,.0f} tok/s ({100 * out['reference']['mfu']:.1f}%), "
              f"{out['speedup_tokens_per_s']:.2f}x; losses agree: rel {_e(rel)} (tol {loss_tol})")
    return ok, detail, out, {"loss_rel": loss_tol}


def measure_ranking(model, valid, users: int, exact: bool):
    """Users/s of full_sort_predict vs Hugging Face's constrained generate on the same users; agreement reported
    (asserted in fp32, where both must return the same titles and scores)."""
    from ..hf_generate import hf_rank
    from ..ranking import compare_users, our_titles
    from ..reference import DictTrie

    batch = valid_users(valid, users)
    model.eval()
    dict_trie = DictTrie(model.prompts.sequences()[0])
    beams = model.opts.num_beams

    def ours(rows):
        return model.full_sort_predict(rows)

    def hf(rows):
        ids, mask = model.pad([model.prompts.prompt(h) for h in model._histories(rows)], left=True)
        return hf_rank(model.base, ids, mask, dict_trie, beams, model.trie.max_depth, model.opts.length_penalty)

    out = {"users": len(batch), "num_beams": beams, "decode_batch_size": model.opts.decode_batch_size,
           "titles": model.trie.num_leaves, "memory_kind": memory_kind()}
    results = {}
    with torch.no_grad():
        for name, fn in (("ours", ours), ("hf", hf)):
            if torch.cuda.is_available():
                fn(batch[:1])  # warm-up (kernels, cuBLAS handles, allocator)
            with PeakMemory() as mem:
                sync()
                start = time.perf_counter()
                results[name] = fn(batch)
                sync()
                elapsed = time.perf_counter() - start
            out[name] = {"s": elapsed, "users_per_s": len(batch) / elapsed, "peak_memory_bytes": mem.peak,
                         "peak_memory_above_start_bytes": mem.delta}
    records = compare_users(our_titles(model, results["ours"]), results["hf"], TOL["rank_score_fp32"])
    out["identical_users"] = sum(r["same"] for r in records)
    out["same_titles_users"] = sum(r["same_titles"] for r in records)
    out["max_score_diff"] = max(r["max_score_diff"] for r in records)
    out["speedup"] = out["ours"]["users_per_s"] / out["hf"]["users_per_s"]
    ok = not exact or out["identical_users"] == len(batch)
    detail = (f"{len(batch)} users, {beams} beams, {out['titles']} titles: ours {out['ours']['users_per_s']:.2f} users/s, "
              f"HF generate {out['hf']['users_per_s']:.2f} users/s, {out['speedup']:.2f}x; same titles for "
              f"{out['same_titles_users']}/{len(batch)} users, max score diff {out['max_score_diff']:.2g}"
              + (f" (fp32: identical required, tol {TOL['rank_score_fp32']})" if exact
                 else " (bf16: reported, not asserted; check 2 asserts bf16 ranking)"))
    return ok, detail, out, {"rank_score_fp32": TOL["rank_score_fp32"]} if exact else {}
