"""Smoke test of the benchmark suite's equality checks (tiny random Llama, a few seconds).

The benchmarks assert that the reference-style training step computes LLMMSL's loss and that
Hugging Face's constrained ``generate`` returns the same titles and scores as our beam search;
this keeps those comparisons from rotting without running the suite.
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from benchmarks import fixture, ranking, train_step
from benchmarks.hf_generate import hf_rank
from benchmarks.reference import DictTrie, ReferenceStep, build_masks


@pytest.fixture(scope="module")
def setting(tiny_llm_dir, tmp_path_factory):
    return fixture.load_setting(tiny_llm_dir, checkpoint_dir=str(tmp_path_factory.mktemp("saved")))


def _reference(model, batch):
    vocab = model.base.get_output_embeddings().out_features
    return ReferenceStep(model, build_masks(model, batch, DictTrie(model.prompts.sequences()[0]), vocab))


@pytest.mark.parametrize("llama3_head", [False, True])
def test_reference_step_computes_our_loss(setting, llama3_head):
    _, train, _, model = setting
    batch = fixture.training_batch(train, 4)
    model.train()
    try:
        if llama3_head:
            with train_step.Llama3Head(model):
                result = train_step.check_equal(model, batch, _reference(model, batch))
        else:
            result = train_step.check_equal(model, batch, _reference(model, batch))
    finally:
        model.eval()
    assert result["loss_ours"] == pytest.approx(result["loss_reference"], rel=1e-4)
    # one ATS update from the same statistics: the raw estimates agree and tau moved by one EMA step
    assert result["tau_hat_raw_ours"] == pytest.approx(result["tau_hat_raw_reference"], rel=1e-5)
    low, high = model.opts.ats_range
    clamped = min(max(result["tau_hat_raw_ours"], low), high)
    expected = result["tau_before"] + model.opts.ats_alpha * (clamped - result["tau_before"])
    assert result["tau_after_ats"] == pytest.approx(expected, rel=1e-9)


def test_hugging_face_generate_returns_our_top_k(setting):
    _, _, valid, model = setting
    users = fixture.valid_users(valid, 2)
    model.eval()
    with torch.no_grad():
        ours = ranking.our_titles(model, model.full_sort_predict(users))
    ids, mask = model._pad([model.prompts.prompt(h) for h in model._histories(users)], left=True)
    hf = hf_rank(model.base, ids, mask, DictTrie(model.prompts.sequences()[0]), model.opts.num_beams,
                 model.trie.max_depth, model.opts.length_penalty)
    records = ranking.compare_users(ours, hf)
    assert all(len(o) == model.opts.num_beams for o in ours)
    assert all(r["same"] for r in records), records
