"""Loss maths as pure functions over tensors (no model, no config).

MSL (Wang et al., SIGIR 2025, arXiv 2504.04178): the softmax at each response
position runs over the valid tokens V_t only, with a temperature tau:

    loss_t = tau * ( -f_pos / tau + logsumexp_{z in V_t} f_z / tau )

LML is the usual cross-entropy over the whole vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masked_softmax_loss_terms(valid_logits: torch.Tensor, valid_mask: torch.Tensor,
                              target_index: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-position MSL terms.

    Args:
        valid_logits: [P, K] logits of each position's valid tokens (padding ignored).
        valid_mask: [P, K] bool, True where the column is a valid token.
        target_index: [P] column of the positive token.
        tau: temperature (> 0), not differentiated.
    Returns:
        [P] loss terms, ``tau * (logsumexp(f / tau) - f_pos / tau)``.
    """
    scaled = valid_logits.float() / tau
    scaled = scaled.masked_fill(~valid_mask, float("-inf"))
    positive = scaled.gather(1, target_index.unsqueeze(1)).squeeze(1)
    return tau * (torch.logsumexp(scaled, dim=1) - positive)


def lm_loss_terms(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[P] full-vocabulary cross-entropy terms (the standard LML) for logits [P, V], targets [P]."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def ats_positions(sample: torch.Tensor, num_valid: torch.Tensor) -> torch.Tensor:
    """Bool mask [P] of each sample's position with the largest valid set (the first such position on ties).

    That is where the title is chosen. The authors take the rows whose valid set equals the trie
    root's, which for Llama-3 is the first title token because its opening quote merges with the
    first word. Other tokenizers split the quote into variants (SmolLM2: '"', '""', '"\'', '"[', ...):
    the root then offers a handful of quote tokens, and its statistics describe the choice of a quote,
    not of a title. The largest valid set is the title choice whatever the tokenizer does with quotes.
    """
    if not sample.numel():
        return torch.zeros_like(sample, dtype=torch.bool)
    groups = int(sample.max()) + 1
    largest = torch.zeros(groups, dtype=num_valid.dtype, device=sample.device)
    largest.scatter_reduce_(0, sample, num_valid, reduce="amax")
    candidate = num_valid == largest[sample]
    index = torch.arange(sample.numel(), device=sample.device)
    first = torch.full((groups,), sample.numel(), dtype=torch.long, device=sample.device)
    first.scatter_reduce_(0, sample[candidate], index[candidate], reduce="amin")
    mask = torch.zeros_like(candidate)
    mask[first[first < sample.numel()]] = True
    return mask


def ats_statistics(valid_logits: torch.Tensor, valid_mask: torch.Tensor, target_index: torch.Tensor):
    """Sufficient statistics for ATS from [P, K] valid logits at each sample's title-choice position.

    Returns a float64 vector ``[n_pos, sum_pos, n_valid, sum_valid, sumsq_valid, sum_m]``: sums, so
    the vectors of several micro-batches and processes add up (all-reduce) before :func:`ats_estimate`.
    """
    logits = valid_logits.detach().double()
    positive = logits.gather(1, target_index.unsqueeze(1)).squeeze(1)
    valid = logits[valid_mask]
    m = valid_mask.sum(1).double()
    return torch.stack([
        torch.tensor(float(positive.numel()), dtype=torch.float64, device=logits.device),
        positive.sum(),
        torch.tensor(float(valid.numel()), dtype=torch.float64, device=logits.device),
        valid.sum(),
        (valid * valid).sum(),
        m.sum(),
    ])


ATS_STATISTICS_SIZE = 6


@dataclass(frozen=True)
class AtsEstimate:
    """One ATS estimate: the logits' statistics and the temperature they give, before and after the clamp."""

    delta: float  # mean positive logit minus mean valid logit
    var: float  # unbiased variance of the valid logits
    m: float  # mean number of valid tokens at the positions used
    raw: float  # tau_hat before the clamp
    clamped: float  # tau_hat within ats_range

    def as_dict(self) -> dict:
        return {"tau_hat_raw": self.raw, "tau_hat": self.clamped, "delta": self.delta, "var": self.var, "m": self.m}


def ats_estimate(stats: torch.Tensor, eta: float, tau_range: tuple[float, float]) -> AtsEstimate | None:
    """tau_hat of the Adaptive Temperature Strategy from summed :func:`ats_statistics`.

    delta = mean(positive) - mean(valid), var = unbiased variance(valid) (torch's default, as in
    the authors' code), m = mean |V_t| over the positions used,
    C = ln(m * eta), tau_hat = (delta + sqrt(max(delta^2 - 2 C var, 0))) / (2 C), clamped to tau_range.

    This is the root used by the authors' released code; Eq. 11 of the paper prints the other
    root (delta - sqrt(...)). Returns None when there is nothing to estimate from (no
    positions, or C <= 0 because fewer than 1/eta tokens are valid), and tau then stays put.
    """
    n_pos, sum_pos, n_valid, sum_valid, sumsq_valid, sum_m = (float(x) for x in stats.tolist())
    if n_pos == 0 or n_valid == 0:
        return None
    mean_valid = sum_valid / n_valid
    variance = max((sumsq_valid - n_valid * mean_valid ** 2) / max(n_valid - 1.0, 1.0), 0.0)
    delta = sum_pos / n_pos - mean_valid
    m = sum_m / n_pos
    c = math.log(m * eta)
    if c <= 0:
        return None
    raw = (delta + math.sqrt(max(delta * delta - 2.0 * c * variance, 0.0))) / (2.0 * c)
    return AtsEstimate(delta=delta, var=variance, m=m, raw=raw, clamped=min(max(raw, tau_range[0]), tau_range[1]))


def ats_update(tau: float, estimate: AtsEstimate | None, alpha: float) -> float:
    """Exponential moving average tau <- (1 - alpha) tau + alpha tau_hat (no-op without an estimate)."""
    return tau if estimate is None else tau + alpha * (estimate.clamped - tau)  # = (1 - alpha) tau + alpha tau_hat
