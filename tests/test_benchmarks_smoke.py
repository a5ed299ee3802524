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


def _first_response_and_first_branch(model, batch):
    """Per sample: (first response position, first branching position, ATS position), counted in response tokens."""
    out = []
    for target in batch[model.POS_ITEM_ID].tolist():
        response = model.prompts.response(target)
        nodes = model.trie.path(torch.tensor([response]), torch.tensor([len(response)]))[0]
        counts = model.trie.num_children(nodes).tolist()
        branching = [k for k, c in enumerate(counts) if c > 1]
        largest = max(branching, key=lambda k: (counts[k], -k)) if branching else None
        out.append((0, branching[0] if branching else None, largest))
    return out


def test_suite_batch_has_a_title_choice_after_the_first_response_token(setting):
    """The equality check below is only a check of ATS's position if the rules differ on its batch."""
    _, train, _, model = setting
    positions = _first_response_and_first_branch(model, fixture.training_batch(train, 4))
    assert any(ats not in (first, branch) for first, branch, ats in positions), positions


def test_timed_steps_leave_both_heads_equal(setting):
    """The suite's own sequence: check, timed steps (with their ATS updates), then the 128k head's check.

    Timed steps used to leave their ATS statistics pending, so the second head's check pooled them
    with its own and the estimates differed; this runs the benchmark's code path, not a copy of it.
    """
    _, train, _, model = setting
    batch = fixture.training_batch(train, 4)
    tau, lora = model.tau, [p.detach().clone() for p in model.parameters() if p.requires_grad]
    default = train_step.compare(model, batch, repeats=1, peak_gflops=1.0, label="default")
    with train_step.Llama3Head(model):
        llama3 = train_step.compare(model, batch, repeats=1, peak_gflops=1.0, label="128k")
    for figures in (default, llama3):
        assert figures["tau_hat_raw_ours"] == pytest.approx(figures["tau_hat_raw_reference"], rel=1e-6)
        assert figures["loss_ours"] == pytest.approx(figures["loss_reference"], rel=1e-6)
    assert model.tau == tau and not model.training  # the shared model is handed back unchanged
    assert all(torch.equal(a, b) for a, b in zip(lora, (p for p in model.parameters() if p.requires_grad)))


def test_stale_ats_statistics_are_refused(setting):
    _, train, _, model = setting
    batch = fixture.training_batch(train, 4)
    model.train()
    try:
        model.loss_terms(batch)  # a pass whose step is never closed
        with pytest.raises(AssertionError, match="unfinished step"):
            train_step.check_equal(model, batch, _reference(model, batch))
    finally:
        model.end_ats_step()
        model.eval()


def test_hugging_face_generate_returns_our_top_k(setting):
    _, _, valid, model = setting
    users = fixture.valid_users(valid, 2)
    model.eval()
    with torch.no_grad():
        ours = ranking.our_titles(model, model.full_sort_predict(users))
    ids, mask = model.pad([model.prompts.prompt(h) for h in model._histories(users)], left=True)
    hf = hf_rank(model.base, ids, mask, DictTrie(model.prompts.sequences()[0]), model.opts.num_beams,
                 model.trie.max_depth, model.opts.length_penalty)
    records = ranking.compare_users(ours, hf)
    assert all(len(o) == model.opts.num_beams for o in ours)
    assert all(r["same"] for r in records), records


def test_end_to_end_reads_the_timings_from_the_result_file_the_summary_names(tmp_path):
    """``--end-to-end`` parses the main command's output: the summary's last line names the result file, and the
    timings come from there (this broke once when the command stopped printing a JSON object)."""
    import json

    from benchmarks import end_to_end
    from recbole_msl.summary import run_summary

    timings = {"data_s": 1.5, "model_load_s": 0.7, "fit_s": 270.0, "valid_s": 85.0, "test_s": 91.0}
    result_file = tmp_path / "LLMMSL-x.result.json"
    result_file.write_text(json.dumps({"timings": timings}))
    result = {"model": "LLMMSL", "dataset": "ml-100k", "best_valid_score": 0.01, "best_valid_result": {"ndcg@10": 0.01},
              "test_result": {"ndcg@10": 0.02}, "valid_metric": "ndcg@10", "timings": timings,
              "tau_trace": [], "examples": [], "result_file": str(result_file), "saved_model_file": "saved/x",
              "test_rows": 200}
    text = run_summary(result) + "\n05 Dec 20:17    INFO  epoch 0 training [time: 94.47s, train loss: 4.5490]\n"
    figures = end_to_end.parse(text)
    assert figures["timings"] == timings and figures["train_epoch_s"] == [94.47]


def test_assistant_timing_ranks_both_ways_and_leaves_the_model_unguided(setting):
    config, train, valid, model = setting
    users = fixture.valid_users(valid, 2)
    model.eval()
    figures = ranking._guided_ranking(config, train._dataset, model, users, quick=True)  # untrained only: fast
    assert figures["plain_s"] > 0 and figures["guided_s"] > 0 and figures["assistant"] == "untrained"
    assert model.assistant is None and model.assistant_weight == 0.0  # the other benchmarks rank unguided
    rows = ranking.summary({"ours_users_per_s": 1.0, "hf_users_per_s": 1.0, "speedup": 1.0, "identical_users": 2,
                            "users": 2, **figures})
    assert rows[1][0].startswith("ranking users/s with / without an assistant")
    assert rows[2][0].startswith("assistant's own work") and 0 < figures["assistant_own_share"] < 1
    # with a trained assistant its ratio carries the target and the untrained one is shown beside it, untargeted
    trained = {**figures, "assistant": "trained", "guided_vs_plain": 0.9,
               "untrained": {"plain_s": 1.0, "guided_s": 1.3, "guided_vs_plain": 1.3}}
    rows = ranking.summary({"ours_users_per_s": 1.0, "hf_users_per_s": 1.0, "speedup": 1.0, "identical_users": 2,
                            "users": 2, **trained})
    assert "(trained SASRec)" in rows[1][0] and rows[1][5] is True
    assert "untrained" in rows[2][0] and rows[2][3] == 1.3 and rows[2][5] is None


def test_mass_lookup_figures_are_measured_on_a_small_trie():
    from benchmarks import scale
    from recbole_msl.core.trie import TokenTrie

    sequences = scale.synthetic_titles(500)
    trie = TokenTrie.build(sequences, [[i] for i in range(500)], 500)
    figures = scale._mass_queries(trie, sequences)
    assert set(figures) == {"ranges_s", "masses_s", "lookup_s", "lookup_candidates", "lookup_ns_per_candidate"}
    assert all(v > 0 for v in figures.values())
