"""ATS updates tau once per optimizer step from the pooled statistics of all its micro-batches."""

import copy
import itertools

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from recbole_msl.recbole_seam.build import build_run
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset
from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

STEPS = [list(range(200, 208)), list(range(300, 308)), list(range(400, 408))]  # three effective batches of 8


@pytest.fixture(scope="module")
def dataset(tiny_llm_dir):
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={"llm_path": tiny_llm_dir})
    return create_dataset(config)


def _trace(tiny_llm_dir, dataset, tmp_path, micro_batch_size: int, **extra):
    """The tau trace of three optimizer steps on fixed rows; no LoRA dropout, so shapes are all that differ."""
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={
        "llm_path": tiny_llm_dir, "train_batch_size": 8, "micro_batch_size": micro_batch_size, "lora_dropout": 0.0,
        "ats_range": [0.01, 50.0], "checkpoint_dir": str(tmp_path), "show_progress": False, **extra})
    built = build_run(config, dataset=copy.deepcopy(dataset))  # building the split changes the data set
    train, trainer = built.train_data, built.trainer
    assert isinstance(trainer, LLMMSLTrainer)
    trainer.scheduler = LambdaLR(trainer.optimizer, lambda step: 1.0)  # a constant rate
    trainer.model.train()
    for rows in STEPS:
        trainer._optimizer_step(train._dataset[torch.tensor(rows)])
    return trainer.tau_trace


def test_micro_batch_size_does_not_change_tau(tiny_llm_dir, dataset, tmp_path):
    traces = {size: _trace(tiny_llm_dir, dataset, tmp_path, size) for size in (2, 4, 8)}
    reference = traces[8]
    assert [r["step"] for r in reference] == [1, 2, 3]  # one record, and one update, per optimizer step
    assert all({"tau", "tau_hat_raw", "tau_hat", "delta", "var", "m"} <= set(r) for r in reference)
    for size in (2, 4):  # equal up to the float32 rounding of other batch shapes (measured: 1.3e-6 relative)
        for got, want in zip(traces[size], reference, strict=True):
            assert got.keys() == want.keys()
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), (size, key)


def test_tau_moves_by_one_ema_step_per_optimizer_step_with_a_one_step_lag(tiny_llm_dir, dataset, tmp_path):
    trace = _trace(tiny_llm_dir, dataset, tmp_path, 2)
    assert trace[0]["tau"] == 1.5  # ats_tau_init: the first step uses it
    for before, after in itertools.pairwise(trace):  # each step's estimate moves the next step's tau by alpha
        assert after["tau"] == pytest.approx(before["tau"] + 0.05 * (before["tau_hat"] - before["tau"]), rel=1e-12)
        assert before["tau_hat"] == min(max(before["tau_hat_raw"], 0.01), 50.0)  # the clamp applies to the raw estimate
    assert trace[0]["m"] > 100  # the title choice among ml-100k's 1,659 titles, not the quote before it


def test_fixed_tau_records_only_the_tau(tiny_llm_dir, dataset, tmp_path):
    trace = _trace(tiny_llm_dir, dataset, tmp_path, 4, tau=4.5)
    assert trace == [{"step": s, "tau": 4.5} for s in (1, 2, 3)]


@pytest.mark.parametrize("warmup, total", [(0, 5), (3, 10), (10, 10), (1, 80)])
def test_warmup_schedule_equals_transformers_linear_schedule(warmup, total):
    """The schedule is ours (no transformers import in the trainer) and gives transformers' rates step for step."""
    from transformers import get_linear_schedule_with_warmup

    from recbole_msl.trainer.schedule import warmup_then_linear_decay

    def rates(make):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        scheduler = make(optimizer)
        out = []
        for _ in range(total + 2):
            out.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return out

    ours = rates(lambda o: warmup_then_linear_decay(o, warmup, total))
    assert ours == rates(lambda o: get_linear_schedule_with_warmup(o, warmup, total))
    assert ours[-1] == 0.0 and max(ours) <= 0.5
