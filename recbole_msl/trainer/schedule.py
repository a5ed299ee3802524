"""The learning-rate schedule: linear warmup, then linear decay to zero (the paper's, via transformers there)."""

from __future__ import annotations

from torch.optim.lr_scheduler import LambdaLR


def warmup_then_linear_decay(optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """The rate grows from 0 to its set value over ``warmup_steps`` steps, then falls linearly to 0 at
    ``total_steps``: the factor transformers' ``get_linear_schedule_with_warmup`` applies, as a plain function."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)
