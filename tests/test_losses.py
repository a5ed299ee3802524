import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_msl.core.losses import (
    ats_estimate,
    ats_positions,
    ats_statistics,
    ats_update,
    lm_loss_terms,
    masked_softmax_loss_terms,
)


def dense_msl(full_logits, valid_sets, targets, tau):
    """Reference: cross-entropy over the full vocabulary with invalid tokens at -inf, times tau."""
    out = []
    for logits, valid, target in zip(full_logits, valid_sets, targets):
        masked = torch.full_like(logits, float("-inf"))
        masked[list(valid)] = logits[list(valid)] / tau
        out.append(tau * F.cross_entropy(masked.unsqueeze(0), torch.tensor([target])))
    return torch.stack(out)


def pack(full_logits, valid_sets, targets):
    width = max(len(v) for v in valid_sets)
    tokens = torch.zeros(len(valid_sets), width, dtype=torch.long)
    mask = torch.zeros(len(valid_sets), width, dtype=torch.bool)
    target_index = torch.zeros(len(valid_sets), dtype=torch.long)
    for i, valid in enumerate(valid_sets):
        valid = sorted(valid)
        tokens[i, :len(valid)] = torch.tensor(valid)
        mask[i, :len(valid)] = True
        target_index[i] = valid.index(targets[i])
    return full_logits.gather(1, tokens), mask, target_index


@pytest.mark.parametrize("tau", [0.5, 1.0, 1.5, 4.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_msl_equals_dense_masked_cross_entropy(tau, dtype):
    g = torch.Generator().manual_seed(0)
    vocab = 30
    full = torch.randn(7, vocab, generator=g, dtype=dtype) * 3
    valid_sets = [set(torch.randperm(vocab, generator=g)[:k].tolist()) for k in (2, 3, 5, 8, 2, 30, 4)]
    targets = [sorted(v)[i % len(v)] for i, v in enumerate(valid_sets)]
    logits, mask, target_index = pack(full, valid_sets, targets)
    got = masked_softmax_loss_terms(logits, mask, target_index, tau)
    torch.testing.assert_close(got.double(), dense_msl(full.double(), valid_sets, targets, tau), rtol=1e-5, atol=1e-5)


def test_all_tokens_valid_and_tau_one_is_cross_entropy():
    full = torch.randn(5, 11)
    targets = torch.tensor([0, 3, 10, 4, 4])
    mask = torch.ones_like(full, dtype=torch.bool)
    torch.testing.assert_close(masked_softmax_loss_terms(full, mask, targets, 1.0).mean(), F.cross_entropy(full, targets))
    torch.testing.assert_close(lm_loss_terms(full, targets), F.cross_entropy(full, targets, reduction="none"))


def test_tau_scales_the_loss_by_tau():
    """tau * (-log softmax(f / tau)[pos]) over the valid columns only, worked out with Python floats."""
    logits = [[2.0, 0.0, -1.0, 7.0], [0.5, 4.0, -2.0, 1.0]]
    valid = [[True, True, True, False], [True, True, True, True]]  # row 0's last column is padding
    targets = [0, 2]
    for tau in (3.0, 0.5):
        expected = []
        for row, keep, target in zip(logits, valid, targets):
            weights = [math.exp(f / tau) for f, k in zip(row, keep) if k]
            expected.append(tau * -math.log(math.exp(row[target] / tau) / sum(weights)))
        got = masked_softmax_loss_terms(torch.tensor(logits), torch.tensor(valid), torch.tensor(targets), tau)
        assert got.tolist() == pytest.approx(expected, rel=1e-5)
    # by hand for row 0, tau 3: tau * -log(e^(2/3) / (e^(2/3) + e^0 + e^(-1/3))) = 1.8959...
    assert float(masked_softmax_loss_terms(torch.tensor(logits[:1]), torch.tensor(valid[:1]), torch.tensor([0]),
                                           3.0)[0]) == pytest.approx(1.89588, abs=1e-4)


def test_gradients_flow_only_to_valid_logits():
    logits = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [True, True, True, False]])
    masked_softmax_loss_terms(logits, mask, torch.tensor([1, 2]), 2.0).mean().backward()
    assert torch.all(logits.grad[~mask] == 0) and torch.all(logits.grad[mask] != 0)


def reference_tau_hat(positives, valids, m, eta, low, high):
    pos = torch.tensor(positives, dtype=torch.float64)
    val = torch.tensor(valids, dtype=torch.float64)
    delta = pos.mean() - val.mean()
    var = val.var()  # unbiased
    c = math.log(m * eta)
    tau = (delta + torch.sqrt(torch.clamp(delta ** 2 - 2 * c * var, min=0))) / (2 * c)
    return float(torch.clamp(tau, low, high))


@pytest.mark.parametrize("scale", [1.0, 5.0, 20.0])
def test_ats_matches_closed_form(scale):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 40, generator=g, dtype=torch.float64) * scale
    mask = torch.ones_like(logits, dtype=torch.bool)
    target = torch.randint(0, 40, (6,), generator=g)
    logits[torch.arange(6), target] += 3 * scale  # positives stand out
    stats = ats_statistics(logits, mask, target)
    expected = reference_tau_hat(logits[torch.arange(6), target].tolist(), logits.flatten().tolist(), 40, 0.25,
                                 1.5, 5.0)
    assert ats_estimate(stats, 0.25, (1.5, 5.0)).clamped == pytest.approx(expected, rel=1e-9)


def test_ats_known_statistics_by_hand():
    # positives [4, 4] and valid logits {4, 0} twice: delta = 2, var = 16/3 (unbiased over 4 values), m = 2
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    mask = torch.ones_like(logits, dtype=torch.bool)
    stats = ats_statistics(logits, mask, torch.tensor([0, 1]))
    c = math.log(2 * 2.0)  # eta = 2 so that C > 0
    disc = 4 - 2 * c * 16 / 3
    expected = (2 + math.sqrt(max(disc, 0))) / (2 * c)
    estimate = ats_estimate(stats, 2.0, (0.01, 100.0))
    assert estimate.raw == estimate.clamped == pytest.approx(expected)
    assert (estimate.delta, estimate.m) == (pytest.approx(2.0), pytest.approx(2.0))
    assert estimate.var == pytest.approx(16 / 3)
    assert ats_estimate(stats, 2.0, (5.0, 100.0)).clamped == 5.0  # the clamp binds; raw is kept
    assert ats_estimate(stats, 2.0, (5.0, 100.0)).raw == pytest.approx(expected)


def test_ats_update_is_an_ema_and_skips_missing_estimates():
    stats = ats_statistics(torch.tensor([[9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]),
                           torch.ones(1, 8, dtype=torch.bool), torch.tensor([0]))
    estimate = ats_estimate(stats, 0.25, (1.5, 5.0))
    assert ats_update(1.5, estimate, 0.05) == pytest.approx(0.95 * 1.5 + 0.05 * estimate.clamped)
    assert ats_update(2.0, None, 0.05) == 2.0
    stats = ats_statistics(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), torch.tensor([0]))
    assert ats_estimate(stats, 0.25, (1.5, 5.0)) is None  # C = ln(0.5) < 0: no estimate


def test_ats_positions_pick_each_samples_largest_valid_set():
    # sample 0: the quote variants first (5), then the title choice (40); sample 1: the root is the choice
    sample = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    counts = torch.tensor([5, 40, 9, 64, 3, 2, 7, 7])
    mask = ats_positions(sample, counts)
    assert mask.tolist() == [False, True, False, True, False, True, True, False]  # ties: the first


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.floats(0.2, 8.0), st.integers(0, 10_000))
def test_msl_random_shapes_match_dense(k, tau, seed):
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(4, 40, generator=g, dtype=torch.float64) * 4
    valid_sets = [set(torch.randperm(40, generator=g)[:k].tolist()) for _ in range(4)]
    targets = [min(v) for v in valid_sets]
    logits, mask, target_index = pack(full, valid_sets, targets)
    got = masked_softmax_loss_terms(logits, mask, target_index, tau)
    # the loss is computed in float32 (as on the model path); the reference in float64
    torch.testing.assert_close(got.double(), dense_msl(full, valid_sets, targets, tau), rtol=1e-5, atol=1e-5)
