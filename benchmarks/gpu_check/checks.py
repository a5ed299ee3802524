"""The five checks: bf16 losses (1), bf16 beam search (2), beam attention (3), gradient checkpointing (4), a tiny
run end to end (5)."""

from __future__ import annotations

import math
import os
import types

import torch

from .backbones import _e, grad_agreement, loss_and_grads
from .settings import CATALOGUE, HISTORY, PLANS, ROOT, SIZES, TOL


# ------------------------------------------------------------------- check 1
def check_bf16_losses(m32, m16, batch):
    """MSL (with its ATS statistics) and LML losses and LoRA gradients, bf16 against fp32."""
    figures, ok, parts, plain = {}, True, [], {}
    for loss in ("msl", "lml"):
        l32, g32, ats32 = loss_and_grads(m32, batch, loss)
        l16, g16, ats16 = loss_and_grads(m16, batch, loss)
        agree = grad_agreement(g32, g16)
        f = {"loss_fp32": l32, "loss_bf16": l16, "loss_rel": abs(l16 - l32) / abs(l32), **agree}
        good = (f["loss_rel"] <= TOL["loss_rel"] and agree["cos"] >= TOL["grad_cos"]
                and agree["norm_rel"] <= TOL["grad_norm_rel"] and agree["norm"] > 0)
        text = (f"{loss} loss {l32:.4f}/{l16:.4f} rel {_e(f['loss_rel'])}, grad cos {agree['cos']:.5f} "
                f"(min tensor {agree['min_tensor_cos']:.4f}), norm rel {_e(agree['norm_rel'])}")
        if loss == "msl":
            raw32, raw16 = ats32.get("tau_hat_raw", math.nan), ats16.get("tau_hat_raw", math.nan)
            f.update(tau_hat_raw_fp32=raw32, tau_hat_raw_bf16=raw16, tau_hat_abs=abs(raw16 - raw32),
                     ats_delta_fp32=ats32.get("delta"), ats_delta_bf16=ats16.get("delta"),
                     ats_var_fp32=ats32.get("var"), ats_var_bf16=ats16.get("var"))
            good = good and f["tau_hat_abs"] <= TOL["tau_hat_abs"]
            text += f", ATS tau_hat {raw32:.4f}/{raw16:.4f} diff {_e(f['tau_hat_abs'])}"
        figures[loss], ok = f, ok and good
        parts.append(text)
        plain[loss] = (l32, g32)
    tolerance = {k: TOL[k] for k in ("loss_rel", "tau_hat_abs", "grad_cos", "grad_norm_rel")}
    detail = "; ".join(parts) + (f" (tol: loss rel <= {TOL['loss_rel']}, tau_hat diff <= {TOL['tau_hat_abs']}, "
                                 f"cos >= {TOL['grad_cos']}, norm rel <= {TOL['grad_norm_rel']})")
    figures["_plain"] = plain  # kept for check 4, dropped from the JSON
    return ok, detail, figures, tolerance


# ------------------------------------------------------------------- check 2
def catalogue_setting(tokenizer, device):
    """(prompts of 3 users, the 10-title trie, responses of items 1..10) built by the plugin's PromptBuilder."""
    import yaml

    from recbole_msl.core.trie import TokenTrie
    from recbole_msl.lm.prompt import DEFAULT_TEMPLATE, PromptBuilder

    with open(os.path.join(ROOT, "properties", "model", "LLMMSL.yaml")) as f:
        defaults = yaml.safe_load(f)
    titles = [None, *CATALOGUE, *HISTORY]  # item 0 is RecBole's padding item
    builder = PromptBuilder(tokenizer, titles, DEFAULT_TEMPLATE, defaults["prompt_instruction"],
                            defaults["prompt_input"], 2048)
    first = 1 + len(CATALOGUE)
    histories = [list(range(first, first + 10)), [first + 2, first + 5, first + 7], [first + 1, first + 4, first + 9]]
    items = list(range(1, 1 + len(CATALOGUE)))
    responses = [builder.response(i) for i in items]
    trie = TokenTrie.build(responses, [[i] for i in items], len(titles)).to(device)
    return [builder.prompt(h) for h in histories], trie, responses


@torch.no_grad()
def exhaustive_scores(model, prompt: list[int], responses: list[list[int]], pad: int, length_penalty: float = 1.0):
    """Teacher-forced fp32 score of every title (full softmax, as the search with cbs_renormalize False)."""
    from recbole_msl.core.batching import pad_rows

    device = model.get_input_embeddings().weight.device
    ids, _ = pad_rows([prompt + r[:-1] for r in responses], pad, left=False, device=device)  # causal: right pad is inert
    keep = ids.size(1) - (len(prompt) - 1)  # logits at the response positions only
    logits = model(input_ids=ids, logits_to_keep=keep).logits.float()  # [titles, keep, V]
    out = []
    for row, response in zip(logits, responses):
        steps = row[:len(response)].log_softmax(-1)
        total = steps.gather(1, torch.tensor(response, device=device).unsqueeze(1)).sum()
        out.append(float(total) / len(response) ** length_penalty)
    return out


@torch.no_grad()
def beam_scores(model, prompts, trie, beams: int, pad: int):
    """{user: {item: score}} from the plugin's constrained beam search, the shared prefix run once (as LLMMSL.rank)."""
    from recbole_msl.core.batching import pad_rows
    from recbole_msl.core.beam_search import constrained_beam_search
    from recbole_msl.lm.cached_lm import CachedCausalLM
    from recbole_msl.lm.common_prefix import common_prefix_length

    device = model.get_input_embeddings().weight.device
    shared = common_prefix_length(prompts)
    ids, mask = pad_rows([p[shared:] for p in prompts], pad, left=True, device=device)
    lm = CachedCausalLM(model)
    scores, leaves = constrained_beam_search(lm, ids, mask, trie, beams, prefix=prompts[0][:shared])
    users = []
    for row_scores, row_leaves in zip(scores.tolist(), leaves.tolist()):
        found = {}
        for score, leaf in zip(row_scores, row_leaves):
            if leaf >= 0:
                for item in trie.items_of_leaves(torch.tensor([leaf], device=device))[0].tolist():
                    found[item] = score
        users.append(found)
    return users, lm.live_rows_only


def check_beam_search(base32, base16, tokenizer, device):
    """bf16 (and fp32) constrained beam search against fp32 exhaustive scoring on a 10-title catalogue."""
    prompts, trie, responses = catalogue_setting(tokenizer, device)
    pad = tokenizer.pad_token_id
    beams = len(CATALOGUE)
    items = list(range(1, 1 + beams))
    exact = [dict(zip(items, exhaustive_scores(base32, p, responses, pad))) for p in prompts]
    found16, shared_layout = beam_scores(base16, prompts, trie, beams, pad)
    found32, _ = beam_scores(base32, prompts, trie, beams, pad)
    users, ok = [], True
    for u, (ref, got16, got32) in enumerate(zip(exact, found16, found32)):
        same_set = set(got16) == set(ref) and set(got32) == set(ref)
        diff16 = max((abs(got16[i] - ref[i]) for i in ref if i in got16), default=math.inf)
        diff32 = max((abs(got32[i] - ref[i]) for i in ref if i in got32), default=math.inf)
        order_ref = sorted(ref, key=lambda i: -ref[i])
        order16 = sorted(got16, key=lambda i: -got16[i])
        rank_agree = sum(a == b for a, b in zip(order_ref, order16))
        swaps = [abs(ref[a] - ref[b]) for x, a in enumerate(order16) for b in order16[x + 1:]
                 if a in ref and b in ref and ref[b] > ref[a]]  # pairs bf16 puts the other way round
        worst_swap = max(swaps, default=0.0)
        good = (same_set and diff16 <= TOL["beam_bf16"] and diff32 <= TOL["beam_fp32"]
                and worst_swap <= TOL["swap_gap"])
        ok = ok and good
        users.append({"user": u, "prompt_tokens": len(prompts[u]), "same_set": same_set,
                      "rank_agreement": rank_agree, "swapped_pairs": len(swaps), "largest_swapped_gap_fp32": worst_swap,
                      "max_score_diff_bf16": diff16, "max_score_diff_fp32_search": diff32,
                      "fp32_top_gap": ref[order_ref[0]] - ref[order_ref[1]], "ok": good})
    figures = {"users": users, "titles": beams, "beams": beams, "one_prompt_per_user_layout": shared_layout}
    tolerance = {k: TOL[k] for k in ("beam_bf16", "beam_fp32", "swap_gap")}
    detail = (f"{len(users)} users x {beams} titles, {beams} beams: same top-{beams} set "
              f"{sum(u['same_set'] for u in users)}/{len(users)}, rank agreement "
              f"{sum(u['rank_agreement'] for u in users)}/{beams * len(users)} positions, "
              f"{sum(u['swapped_pairs'] for u in users)} swapped pairs (largest fp32 gap "
              f"{max(u['largest_swapped_gap_fp32'] for u in users):.3g}), max |bf16 - fp32| "
              f"{max(u['max_score_diff_bf16'] for u in users):.3g}, fp32 search max diff "
              f"{_e(max(u['max_score_diff_fp32_search'] for u in users))} (tol: bf16 {TOL['beam_bf16']}, "
              f"fp32 {TOL['beam_fp32']}, swaps only within fp32 gap {TOL['swap_gap']})")
    return ok, detail, figures, tolerance


# ------------------------------------------------------------------- check 3
def attention_case(device, dtype, heads: int, kv_heads: int, dim: int, rows_per_user: int, seed: int = 0):
    """Max |ours - SDPA| and the worst |diff| / (1 + |SDPA|), as tests/test_beam_attention.py sets it up."""
    import torch.nn.functional as F

    from recbole_msl.lm.beam_attention import UserPromptState, user_prompt_attention

    generator = torch.Generator().manual_seed(seed)
    users, prompt, generated, rep = 6, 160, 7, heads // kv_heads
    rows = users * rows_per_user

    def rand(*shape):
        return torch.randn(shape, generator=generator).to(device, dtype)

    prompt_keys, prompt_values = rand(users, kv_heads, prompt, dim), rand(users, kv_heads, prompt, dim)
    visible = torch.ones(users, prompt, dtype=torch.bool)
    for u in range(users):
        visible[u, :(u * 17) % 50] = False  # left padding of different widths
    visible = visible.to(device)
    own_keys, own_values = rand(rows, kv_heads, generated, dim), rand(rows, kv_heads, generated, dim)
    query = rand(rows, heads, 1, dim)
    layer = types.SimpleNamespace(prompt_keys=prompt_keys, prompt_values=prompt_values,
                                  prompt_visible=visible[:, None, None, :])
    state = UserPromptState([layer])
    state.rows_per_user = rows_per_user
    out, _ = user_prompt_attention(types.SimpleNamespace(layer_idx=0), query, own_keys, own_values, None,
                                   scaling=dim ** -0.5, user_prompts=state)
    owner = torch.arange(rows, device=device) // rows_per_user
    keys = torch.cat([prompt_keys[owner], own_keys], 2).float().repeat_interleave(rep, 1)
    values = torch.cat([prompt_values[owner], own_values], 2).float().repeat_interleave(rep, 1)
    mask = torch.cat([visible[owner], torch.ones(rows, generated, dtype=torch.bool, device=device)], 1)
    expected = F.scaled_dot_product_attention(query.float(), keys, values, attn_mask=mask[:, None, None, :])
    expected = expected.transpose(1, 2)
    diff = (out.float() - expected).abs()
    assert out.shape == (rows, 1, heads, dim) and out.dtype == dtype
    return float(diff.max()), float((diff / (1 + expected.abs())).max())


def check_attention(device, dtype, size: str):
    spec = SIZES[size]
    heads, kv_heads = spec["num_attention_heads"], spec["num_key_value_heads"]
    dim = spec["hidden_size"] // heads
    tol = TOL["attn_fp32" if dtype == torch.float32 else "attn_bf16"]
    cases = {m: attention_case(device, dtype, heads, kv_heads, dim, m) for m in (1, 4, 10)}
    worst = max(c[1] for c in cases.values())
    figures = {"heads": heads, "kv_heads": kv_heads, "head_dim": dim, "prompt": 160, "generated": 7, "users": 6,
               "dtype": str(dtype), "max_abs_diff": {str(m): c[0] for m, c in cases.items()},
               "max_scaled_diff": worst}
    detail = (f"{str(dtype).replace('torch.', '')}, {heads}/{kv_heads} heads x {dim}, 6 users x 160 prompt tokens, "
              f"rows per user 1/4/10: max |diff| {_e(max(c[0] for c in cases.values()))}, max |diff|/(1+|sdpa|) "
              f"{_e(worst)} (tol atol=rtol={tol})")
    return worst <= tol, detail, figures, {"atol": tol, "rtol": tol}


# ------------------------------------------------------------------- check 4
def check_checkpointing(model_ckpt, plain: dict, batch):
    """Loss and LoRA gradients under gradient checkpointing equal those of the plain fp32 path (check 1's)."""
    base = model_ckpt.base
    base.train()
    active = bool(getattr(base, "is_gradient_checkpointing", False))
    figures, ok, parts = {"checkpointing_active": active}, active, []
    for loss in ("msl", "lml"):
        l_plain, g_plain = plain[loss]
        l_ckpt, g_ckpt, _ = loss_and_grads(model_ckpt, batch, loss)
        agree = grad_agreement(g_plain, g_ckpt)
        rel = abs(l_ckpt - l_plain) / abs(l_plain)
        figures[loss] = {"loss_plain": l_plain, "loss_checkpointed": l_ckpt, "loss_rel": rel, **agree}
        ok = ok and rel <= TOL["gc_loss_rel"] and agree["err_rel"] <= TOL["gc_grad_rel"]
        parts.append(f"{loss} loss rel {_e(rel)}, grad err rel {_e(agree['err_rel'])}, cos {agree['cos']:.7f}")
    detail = (f"checkpointing {'on' if active else 'NOT ON'}; " + "; ".join(parts)
              + f" (tol: loss rel <= {TOL['gc_loss_rel']}, grad err rel <= {TOL['gc_grad_rel']})")
    return ok, detail, figures, {k: TOL[k] for k in ("gc_loss_rel", "gc_grad_rel")}


# ------------------------------------------------------------------- check 5
def check_end_to_end(folder: str, device_kind: str, workdir: str):
    """recbole_msl.run on ml-100k with this backbone: finite metrics, a saved adapter that moved."""
    from safetensors.torch import load_file

    import recbole_msl

    overrides = {"llm_path": folder, "epochs": 1, "num_beams": 10, "show_progress": False, "show_examples": 0,
                 "checkpoint_dir": os.path.join(workdir, "saved"), "log_wandb": False, "state": "WARNING",
                 "learning_rate": 1e-3, **PLANS[device_kind]["e2e"]}
    if device_kind == "cpu":
        overrides.update(gpu_id="", use_gpu=False)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = recbole_msl.run("LLMMSL", "ml-100k", config_dict=overrides)
    metrics = {f"valid {k}": v for k, v in (result["best_valid_result"] or {}).items()}
    metrics.update({f"test {k}": v for k, v in (result["test_result"] or {}).items()})
    saved = result.get("saved_model_file") or ""
    files = sorted(os.listdir(saved)) if os.path.isdir(saved) else []
    needed = {"adapter_config.json", "adapter_model.safetensors", "msl_state.json"}
    tensors = load_file(os.path.join(saved, "adapter_model.safetensors")) if "adapter_model.safetensors" in files else {}
    finite_adapter = bool(tensors) and all(bool(torch.isfinite(t).all()) for t in tensors.values())
    trained = any(float(t.abs().max()) > 0 for n, t in tensors.items() if "lora_B" in n)  # B starts at zero
    peak = torch.cuda.max_memory_allocated() if cuda else None
    figures = {"metrics": metrics, "saved": saved, "files": files, "timings": result.get("timings"),
               "adapter_tensors": len(tensors), "adapter_finite": finite_adapter, "adapter_trained": trained,
               "cuda_peak_bytes": peak, "overrides": {k: v for k, v in overrides.items() if k != "llm_path"}}
    ok = (bool(metrics) and all(math.isfinite(v) for v in metrics.values()) and needed <= set(files)
          and finite_adapter and trained and (not cuda or device_kind != "cuda" or peak > 0))
    t = result.get("timings") or {}
    detail = (f"{len(metrics)} metrics finite: {all(math.isfinite(v) for v in metrics.values())} (test ndcg@10 "
              f"{metrics.get('test ndcg@10', math.nan):.4f}, hit@10 {metrics.get('test hit@10', math.nan):.4f}), "
              f"adapter saved with {', '.join(sorted(needed & set(files)))}, {len(tensors)} tensors finite "
              f"{finite_adapter}, lora_B moved {trained}; fit {t.get('fit_s', math.nan):.1f} s, test "
              f"{t.get('test_s', math.nan):.1f} s" + (f", cuda peak {peak / 2 ** 20:.0f} MiB" if peak else ""))
    return ok, detail, figures, {}
