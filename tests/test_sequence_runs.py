"""train_format sequence through whole runs: train, rank, reload the checkpoint, resume (tiny backbone)."""

import os

import pytest
import torch

from recbole_msl import Recommender, run
from recbole_msl.errors import ConfigError
from recbole_msl.recbole_seam.build import build_run
from recbole_msl.recbole_seam.config import Config

SEQUENCE = {"train_format": "sequence", "MAX_ITEM_LIST_LENGTH": 8, "eval_history": 5}


@pytest.fixture(scope="module")
def sequence_run(tiny_llm_dir, tmp_path_factory):
    cfg = {"llm_path": tiny_llm_dir, "epochs": 2, "train_samples_per_epoch": 16, "train_batch_size": 8,
           "micro_batch_size": 4, "eval_max_users": 6, "num_beams": 10, "decode_batch_size": 3,
           "show_progress": False, "checkpoint_dir": str(tmp_path_factory.mktemp("saved")), **SEQUENCE}
    return run("LLMMSL", "ml-100k", config_dict=cfg), cfg


def test_a_sequence_run_trains_on_chunks_and_reports_metrics(sequence_run):
    result, _ = sequence_run
    assert [r["step"] for r in result["tau_trace"]] == [1, 2, 3, 4]  # 2 epochs x 16 chunks / 8 per step
    assert all({"tau_hat_raw", "delta", "var", "m"} <= set(r) for r in result["tau_trace"])
    assert all(r["m"] > 100 for r in result["tau_trace"])  # each target's title choice, not a quote choice
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0


def test_the_checkpoint_records_its_format_and_recommend_uses_it(sequence_run):
    result, _ = sequence_run
    recommender = Recommender(result["saved_model_file"])
    model = recommender.model
    assert model.opts.train_format == "sequence" and model.opts.eval_history == 5
    history = [1, 50, 172, 7, 9, 11, 30]
    prompt = model.ranking_prompt(history)
    assert prompt[-len(model.prompts.separator_ids):] == model.prompts.separator_ids  # asks for the next title
    assert prompt == model.prompts.pack(history[-5:] + [1], 0).ids[:len(prompt)]  # the last 5 titles only
    top = recommender.recommend(history, topk=5)
    assert len(top) == 5 and not {item for item, _, _ in top} & set(history)


def test_another_format_cannot_resume_a_sequence_run(sequence_run):
    result, cfg = sequence_run
    with pytest.raises(ConfigError, match="train_format='sequence'"):
        run("LLMMSL", "ml-100k", config_dict={**cfg, "train_format": "window", "resume": result["saved_model_file"]
                                              + "-last"})


def _lora(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_a_resumed_sequence_run_continues_bit_identically(tiny_llm_dir, tmp_path):
    cfg = {"llm_path": tiny_llm_dir, "epochs": 2, "train_samples_per_epoch": 8, "train_batch_size": 4,
           "micro_batch_size": 2, "lora_dropout": 0.1, "eval_max_users": 3, "show_progress": False,
           "checkpoint_dir": str(tmp_path), **SEQUENCE}
    whole = build_run(Config(model="LLMMSL", dataset="ml-100k", config_dict=cfg))
    whole.trainer.start(whole.train_data)
    whole.trainer.train_until(whole.train_data, 8)
    last = whole.trainer.resume_folder
    resumed_copy = str(tmp_path / "after-epoch-0")
    import shutil

    shutil.copytree(last, resumed_copy)
    whole.trainer.train_until(whole.train_data, 16)
    resumed = build_run(Config(model="LLMMSL", dataset="ml-100k", config_dict={**cfg, "resume": resumed_copy}))
    resumed.trainer.start(resumed.train_data)
    assert resumed.trainer.epochs_done == 1
    resumed.trainer.train_until(resumed.train_data, 16)
    a, b = _lora(whole.model), _lora(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.trainer.tau_trace == whole.trainer.tau_trace
    assert os.path.isdir(last)


# ------------------------------------------------------------------ capacity: LoRA on every linear layer, full
def _model(tiny_llm_dir, tmp_path, **extra):
    from recbole_msl.model.llmmsl import LLMMSL
    from recbole_msl.recbole_seam.data import create_dataset

    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={"llm_path": tiny_llm_dir, "checkpoint_dir":
                                                                   str(tmp_path), **extra})
    return LLMMSL(config, create_dataset(config))


@pytest.mark.parametrize("targets, expected", [
    ("all-linear", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    ("[q_proj,k_proj]", {"q_proj", "k_proj"}),  # the command line's list syntax, as --topk=[5,10]
])
def test_lora_targets_all_linear_layers_or_a_listed_set(tiny_llm_dir, tmp_path, targets, expected):
    model = _model(tiny_llm_dir, tmp_path, lora_target_modules=targets)
    wrapped = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.base.named_parameters()
               if "lora_A" in name}
    assert wrapped == expected
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def full_run(tiny_llm_dir, tmp_path_factory):
    cfg = {"llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 8, "train_batch_size": 4,
           "micro_batch_size": 2, "eval_max_users": 3, "num_beams": 10, "decode_batch_size": 3,
           "show_progress": False, "checkpoint_dir": str(tmp_path_factory.mktemp("saved")),
           "llm_finetune": "full", "learning_rate": 0.01, **SEQUENCE}
    return run("LLMMSL", "ml-100k", config_dict=cfg), cfg


def test_full_fine_tuning_trains_every_weight_and_reloads_them(full_run, tiny_llm_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    result, _ = full_run
    original = dict(AutoModelForCausalLM.from_pretrained(tiny_llm_dir).named_parameters())
    reloaded = Recommender(result["saved_model_file"]).model
    assert all(p.requires_grad for p in reloaded.parameters())
    base = dict(reloaded.base.named_parameters())
    changed = [n for n, p in original.items()
               if not torch.equal(base[n.replace("q_proj.weight", "q_proj.base_layer.weight")
                                       .replace("v_proj.weight", "v_proj.base_layer.weight")], p)]
    assert len(changed) > len(original) // 2  # the backbone itself moved, and the checkpoint brought it back


def test_a_fully_fine_tuned_checkpoint_is_refused_as_an_adapter(full_run):
    result, _ = full_run
    with pytest.raises(ConfigError, match="llm_finetune: full"):
        Recommender(result["saved_model_file"], {"llm_finetune": "lora"})
