"""Two CPU processes with gloo (torchrun): identical LoRA weights on every rank, metrics equal to one process.

The same file is the worker: ``python -m torch.distributed.run --nproc_per_node=2 tests/test_distributed.py OUT
CONFIG`` (with a third argument ``guided``: a run ranked with an ``assistant_checkpoint``).
"""

import contextlib
import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def _record_rankings():
    """Within the block, remember (user, top-10 items) of every row LLMMSL ranks during the latest ``evaluate`` call.

    A tiny random backbone scores no hits, so equal metrics alone would prove little: equal
    per-user rankings show that every user is evaluated once, by one rank, with the same scores.
    """
    from recbole_msl.model.llmmsl import LLMMSL
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    rows = []
    predict, evaluate = LLMMSL.full_sort_predict, LLMMSLTrainer.evaluate

    def recording_predict(self, interaction):
        scores = predict(self, interaction)
        users = interaction[self.USER_ID].tolist()
        rows.extend(zip(users, scores.topk(10).indices.tolist()))
        return scores

    def fresh_evaluate(self, *args, **kwargs):
        rows.clear()
        return evaluate(self, *args, **kwargs)

    LLMMSL.full_sort_predict, LLMMSLTrainer.evaluate = recording_predict, fresh_evaluate
    try:
        yield rows
    finally:  # the patch must not outlive the block: later tests in this process use the real methods
        LLMMSL.full_sort_predict, LLMMSLTrainer.evaluate = predict, evaluate


STEP_ROWS = [list(range(100, 108)), list(range(108, 116))]  # two effective batches of 8: rank r gets rows[4r:4r+4]
# plain SGD at lr 1 without clipping: the update is the gradient itself (Adam's first step and
# clipping are scale-free and would hide a wrong divisor). ATS with a wide clamp: the second step's
# tau comes from the first step's statistics, pooled over the ranks, so a per-rank estimate would show
STEP_SETTINGS = {"learner": "sgd", "learning_rate": 1.0, "clip_grad_norm": None, "tau": "ats",
                 "ats_range": [0.01, 50.0], "lora_dropout": 0.0, "warmup_ratio": 0.0}


def _steps(config_dict: dict, batches: list[list[int]]):
    """(LoRA weights, tau trace) after one optimizer step per batch of rows (this rank's share under torchrun)."""
    from peft import get_peft_model_state_dict
    from torch.optim.lr_scheduler import LambdaLR

    from recbole_msl.recbole_seam.build import build_run
    from recbole_msl.recbole_seam.config import Config

    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={**config_dict, **STEP_SETTINGS})
    built = build_run(config)
    train, trainer = built.train_data, built.trainer
    trainer.scheduler = LambdaLR(trainer.optimizer, lambda step: 1.0)  # a constant rate
    trainer.model.train()
    with torch.no_grad():  # non-zero B, so that A gets a gradient too
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.linspace(-0.1, 0.1, param.numel()).view_as(param))
    for rows in batches:
        trainer._optimizer_step(train._dataset[torch.tensor(rows)])
    weights = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(trainer.model.llm).items()}
    return weights, trainer.tau_trace


def _worker(out_dir: str, config_file: str) -> None:
    """One rank: ``recbole_msl.run`` under torchrun, plus this rank's LoRA weights right after fit."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from recbole_msl import run
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    rank = int(os.environ["RANK"])
    with open(config_file) as f:
        config_dict = json.load(f)
    weights, trace = _steps(config_dict, [rows[4 * rank:4 * rank + 4] for rows in STEP_ROWS])
    save_file(weights, os.path.join(out_dir, f"step{rank}.safetensors"))
    with open(os.path.join(out_dir, f"step{rank}-trace.json"), "w") as f:
        json.dump(trace, f)
    fit = LLMMSLTrainer.fit

    def fit_and_dump(self, *args, **kwargs):
        out = fit(self, *args, **kwargs)
        weights = get_peft_model_state_dict(self.model.llm)
        save_file({k: v.detach().contiguous() for k, v in weights.items()}, os.path.join(out_dir, f"rank{rank}.safetensors"))
        with open(os.path.join(out_dir, f"rank{rank}-train.json"), "w") as f:
            json.dump({"tau": float(self.model.tau), "steps": self.global_step, "world": self.world_size,
                       "budget": self._epoch_budget(args[0])}, f)
        return out

    LLMMSLTrainer.fit = fit_and_dump
    with _record_rankings() as rankings:
        result = run("LLMMSL", "ml-100k", config_dict=config_dict)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"test_result": dict(result["test_result"]), "best_valid_result": dict(result["best_valid_result"]),
                   "saved_model_file": result["saved_model_file"], "tau_trace": result["tau_trace"],
                   "test_rows": result["test_rows"],
                   "test_rankings": rankings}, f)


def _single_process_evaluation(config_dict: dict, checkpoint: str):
    """Valid and test metrics of ``checkpoint`` evaluated by one process."""
    from recbole_msl.recbole_seam.build import build_run
    from recbole_msl.recbole_seam.config import Config

    config = Config(model="LLMMSL", dataset="ml-100k", config_dict=config_dict)
    built = build_run(config)
    train, valid, test, trainer = built.train_data, built.valid_data, built.test_data, built.trainer
    trainer.eval_collector.data_collect(train)
    with _record_rankings() as rankings:
        valid_result = trainer.evaluate(valid, model_file=checkpoint)
        test_result = trainer.evaluate(test, model_file=checkpoint)
        return valid_result, test_result, [list(r) for r in rankings]


@pytest.fixture(scope="module")
def two_ranks(tiny_llm_dir, tmp_path_factory, torchrun_two):
    out = tmp_path_factory.mktemp("ddp")
    config = {"llm_path": tiny_llm_dir, "epochs": 2, "train_samples_per_epoch": 16, "train_batch_size": 8,
              "micro_batch_size": 2, "eval_max_users": 6, "num_beams": 10, "decode_batch_size": 3,
              "eval_batch_size": 6, "show_progress": False, "log_wandb": False,
              "checkpoint_dir": str(out / "saved")}
    done = torchrun_two(__file__, out, config)
    ranks = []
    for rank in range(2):
        with open(out / f"rank{rank}.json") as f, open(out / f"rank{rank}-train.json") as g:
            ranks.append({**json.load(f), **json.load(g), "weights": load_file(str(out / f"rank{rank}.safetensors")),
                          "step": load_file(str(out / f"step{rank}.safetensors"))})
        with open(out / f"step{rank}-trace.json") as f:
            ranks[-1]["step_trace"] = json.load(f)
    return ranks, config, done


def test_lora_weights_are_identical_across_ranks(two_ranks):
    ranks, _, _ = two_ranks
    first, second = ranks[0]["weights"], ranks[1]["weights"]
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[k], second[k]) for k in first)  # bit-identical after every step
    assert any(bool(v.abs().sum()) for k, v in first.items() if "lora_B" in k)  # trained, not the zero init
    assert ranks[0]["tau"] == ranks[1]["tau"] and ranks[0]["tau_trace"] == ranks[1]["tau_trace"]
    # the epoch budget is split over the ranks; the step count is that of one process (16 / 8 per epoch)
    assert [r["budget"] for r in ranks] == [8, 8] and [r["steps"] for r in ranks] == [4, 4]
    assert [r["world"] for r in ranks] == [2, 2]


def test_two_process_steps_equal_the_single_process_steps(two_ranks):
    """Gradients, loss-position counts and ATS statistics are summed over ranks: exact, not averaged."""
    ranks, config, _ = two_ranks
    assert all(torch.equal(ranks[0]["step"][k], ranks[1]["step"][k]) for k in ranks[0]["step"])
    assert ranks[0]["step_trace"] == ranks[1]["step_trace"]
    single, trace = _steps({k: v for k, v in config.items() if k != "checkpoint_dir"}, STEP_ROWS)
    for key, value in single.items():  # a per-rank divisor would double the update
        torch.testing.assert_close(ranks[0]["step"][key], value, rtol=1e-5, atol=1e-7)
    initial = {k: torch.linspace(-0.1, 0.1, v.numel()).view_as(v) for k, v in single.items() if "lora_B" in k}
    assert all(not torch.equal(single[k], initial[k]) for k in initial)  # the steps moved every B
    # the same tau trace as one process: each step's estimate pools both ranks' rows
    assert [r["step"] for r in trace] == [1, 2] and trace[1]["tau"] != trace[0]["tau"]
    for got, want in zip(ranks[0]["step_trace"], trace, strict=True):
        assert got.keys() == want.keys()
        assert all(got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9) for k in want)


def test_only_rank_zero_writes_checkpoints(two_ranks):
    ranks, config, _ = two_ranks
    assert ranks[0]["saved_model_file"] == ranks[1]["saved_model_file"]
    saved = sorted(os.listdir(config["checkpoint_dir"]))
    name = os.path.basename(ranks[0]["saved_model_file"])
    # one best folder, one resume folder and one result file, nothing half written
    assert saved == [name, name + "-last", name + ".result.json"]


def test_sharded_metrics_equal_a_single_process_evaluation(two_ranks):
    ranks, config, _ = two_ranks
    assert ranks[0]["test_result"] == ranks[1]["test_result"]
    assert [r["test_rows"] for r in ranks] == [6, 6]  # the whole run's rows, not a rank's shard of 3
    valid, test, rankings = _single_process_evaluation({k: v for k, v in config.items() if k != "checkpoint_dir"},
                                                       ranks[0]["saved_model_file"])
    assert dict(test) == ranks[0]["test_result"]
    assert dict(valid) == ranks[0]["best_valid_result"]
    # rank 0 ranked the first half of the users, rank 1 the second half: together exactly the single run's rows
    shards = [ranks[0]["test_rankings"], ranks[1]["test_rankings"]]
    assert [len(s) for s in shards] == [config["eval_max_users"] // 2] * 2
    assert shards[0] + shards[1] == rankings


# ----------------------------------------------------------------------------- ranking with an assistant
def _guided_worker(out_dir: str, config_file: str) -> None:
    """One rank of a run ranked with an ``assistant_checkpoint``: its result and the rows it ranked."""
    from recbole_msl import run

    rank = int(os.environ["RANK"])
    with open(config_file) as f:
        config_dict = json.load(f)
    with _record_rankings() as rankings:
        result = run("LLMMSL", "ml-100k", config_dict=config_dict)
    with open(os.path.join(out_dir, f"guided{rank}.json"), "w") as f:
        json.dump({"test_result": dict(result["test_result"]), "best_valid_result": dict(result["best_valid_result"]),
                   "assistant": result["assistant"], "saved_model_file": result["saved_model_file"],
                   "test_rows": result["test_rows"], "test_rankings": rankings}, f)


@pytest.fixture(scope="module")
def guided_ranks(tiny_llm_dir, tmp_path_factory, torchrun_two):
    """A SASRec trained in one process, then an LLMMSL run under torchrun ranked with it (weight grid on valid)."""
    from recbole_msl import run

    out = tmp_path_factory.mktemp("ddp-guided")
    # 32 wide, one block, 3 epochs: a third of the default SASRec's training time, and still a validation hit
    sasrec = run("SASRec", "ml-100k", config_dict={"epochs": 3, "MAX_ITEM_LIST_LENGTH": 10, "show_progress": False,
                                                   "hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 1,
                                                   "eval_max_users": 6, "checkpoint_dir": str(out / "sasrec")})
    config = {"llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 16, "train_batch_size": 8,
              "micro_batch_size": 2, "eval_max_users": 6, "num_beams": 10, "decode_batch_size": 3,
              "eval_batch_size": 6, "show_progress": False, "log_wandb": False,
              "checkpoint_dir": str(out / "saved"), "assistant_checkpoint": sasrec["saved_model_file"],
              "assistant_config": {"MAX_ITEM_LIST_LENGTH": 10}, "assistant_weight": [0, 1.0, 4.0]}
    torchrun_two(__file__, out, config, "guided")
    ranks = []
    for rank in range(2):
        with open(out / f"guided{rank}.json") as f:
            ranks.append(json.load(f))
    return ranks, config


def test_ranking_with_an_assistant_checkpoint_under_torchrun_equals_one_process(guided_ranks, tmp_path):
    """Both ranks keep the same weight from the same (gathered) validation grid; the sharded test ranking, the
    stored folder and a single-process evaluation of that folder agree row for row."""
    from recbole_msl import run

    ranks, config = guided_ranks
    first, second = ranks
    assert first["assistant"] == second["assistant"] and first["test_result"] == second["test_result"]
    assert [g["assistant_weight"] for g in first["assistant"]["grid"]] == [0, 1.0, 4.0]
    # a validation hit for some weight: the choice depends on pooling both ranks' rows (0 would win a tie)
    assert any(g["score"] > 0 for g in first["assistant"]["grid"])
    assert first["assistant"]["source"] == "checkpoint" and first["test_rows"] == second["test_rows"] == 6
    folder = first["saved_model_file"]
    assert os.path.isfile(os.path.join(folder, "assistant.safetensors"))  # the resume and Recommender need it
    single_config = {k: v for k, v in config.items() if k != "checkpoint_dir"}
    with _record_rankings() as rankings:
        again = run("LLMMSL", "ml-100k", config_dict={**single_config, "checkpoint_dir": str(tmp_path),
                                                      "trained_checkpoint": folder})
        rankings = [list(r) for r in rankings]
    assert again["assistant"]["grid"] == first["assistant"]["grid"]
    assert again["assistant"]["weight"] == first["assistant"]["weight"]
    assert dict(again["test_result"]) == first["test_result"]
    assert first["test_rankings"] + second["test_rankings"] == rankings


if __name__ == "__main__":
    if sys.argv[3:] == ["guided"]:
        _guided_worker(sys.argv[1], sys.argv[2])
    else:
        _worker(sys.argv[1], sys.argv[2])
