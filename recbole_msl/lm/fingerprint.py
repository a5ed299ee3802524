"""What tells one backbone from another of the same architecture, so an adapter is never applied to weights it was
not trained on: a few values at fixed positions of a few weight tensors, read once when the backbone loads.

Values, not a hash, so the same weights loaded in another dtype (fp32 training, bf16 or fp16 ranking) still match
(within half a percent, bf16's rounding); two trained models differ everywhere, far beyond that.
Quantised weights (bitsandbytes' integer storage) are skipped; the embeddings and norms still tell models apart.
"""

from __future__ import annotations

import math

TENSORS = 8  # weight tensors sampled, spread over the model from its first to its last
VALUES = 16  # values read from each, spread over the tensor
RTOL, ATOL = 1e-2, 1e-3  # bf16 keeps 8 bits of mantissa: a relative error of at most 0.4%


def weights_fingerprint(model) -> dict:
    """``{"parameters": n, "samples": [[name, shape, values], ...]}`` of ``model``'s floating-point weights."""
    named = [(name, p) for name, p in model.named_parameters() if p.is_floating_point() and p.numel()]
    count = sum(p.numel() for _, p in model.named_parameters())
    if not named:
        return {"parameters": count, "samples": []}
    picks = sorted({round(i * (len(named) - 1) / max(TENSORS - 1, 1)) for i in range(TENSORS)})
    samples = []
    for index in picks:
        name, param = named[index]
        flat = param.detach().reshape(-1)
        positions = sorted({(k * (flat.numel() - 1)) // max(VALUES - 1, 1) for k in range(VALUES)})
        values = flat[positions].float().cpu().tolist()
        samples.append([name, list(param.shape), values])
    return {"parameters": count, "samples": samples}


def fingerprint_difference(saved: dict, now: dict) -> str | None:
    """How ``now`` differs from ``saved`` (a parameter count, a tensor, a value), or None when they match."""
    if saved.get("parameters") != now.get("parameters"):
        return f"{saved.get('parameters')} parameters then, {now.get('parameters')} now"
    ours = {name: (shape, values) for name, shape, values in now.get("samples", [])}
    for name, shape, values in saved.get("samples", []):
        if name not in ours or ours[name][0] != shape:
            return f"no weight {name} of shape {shape} now"
        for then, here in zip(values, ours[name][1]):
            if not math.isclose(then, here, rel_tol=RTOL, abs_tol=ATOL):
                return f"{name} holds other values ({then:.6g} then, {here:.6g} now)"
    return None
