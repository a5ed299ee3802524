"""Resume: a run killed with SIGKILL after an epoch continues from ``<saved>-last`` to the same end."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from recbole_msl import run
from recbole_msl.cli import main
from recbole_msl.errors import ConfigError
from recbole_msl.trainer.resume import load_resume_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def resume_config(tiny_run_config):
    # 3 epochs with LoRA dropout on: weights, tau, schedule, RNG and data order all have to carry over
    return {**tiny_run_config, "epochs": 3, "lora_dropout": 0.1}


def _last_folder(checkpoint_dir):
    found = glob.glob(os.path.join(checkpoint_dir, "*-last"))
    return found[0] if found and os.path.isfile(os.path.join(found[0], "manifest.json")) else None


def _kill_after_first_epoch(config, checkpoint_dir):
    """Train in a child process and SIGKILL it as soon as its first resume checkpoint is in place."""
    args = ["--model=LLMMSL", "--dataset=ml-100k"] + [f"--{k}={v}" for k, v in config.items()]
    args.append(f"--checkpoint_dir={checkpoint_dir}")
    child = subprocess.Popen([sys.executable, os.path.join(ROOT, "run_recbole_msl.py"), *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # generous: on a shared 2-core machine the child's start and first epoch took over 120 s
        deadline = time.monotonic() + 900
        while _last_folder(checkpoint_dir) is None:
            assert child.poll() is None, "the child run ended before saving a resume checkpoint"
            assert time.monotonic() < deadline, "no resume checkpoint within 900 s"
            time.sleep(0.02)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return _last_folder(checkpoint_dir)


def _adapter(folder):
    return load_file(os.path.join(folder, "adapter_model.safetensors"))


def test_killed_run_resumes_to_the_uninterrupted_result(resume_config, tmp_path):
    whole = run("LLMMSL", "ml-100k", config_dict={**resume_config, "checkpoint_dir": str(tmp_path / "whole")})

    last = _kill_after_first_epoch(resume_config, str(tmp_path / "killed"))
    with open(os.path.join(last, "trainer_state.json")) as f:
        killed_at = json.load(f)["epoch"]
    assert killed_at < resume_config["epochs"] - 1  # work was left to do

    resumed = run("LLMMSL", "ml-100k", config_dict={**resume_config, "checkpoint_dir": str(tmp_path / "killed"),
                                                     "resume": last})
    assert resumed["saved_model_file"] + "-last" == last  # the killed run's best folder, not a new one
    final_whole, final_resumed = _adapter(whole["saved_model_file"] + "-last"), _adapter(last)
    assert final_whole.keys() == final_resumed.keys()
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)  # bit-identical
    best_whole, best_resumed = _adapter(whole["saved_model_file"]), _adapter(resumed["saved_model_file"])
    assert all(torch.equal(best_whole[k], best_resumed[k]) for k in best_whole)
    assert dict(resumed["test_result"]) == dict(whole["test_result"])
    assert dict(resumed["best_valid_result"]) == dict(whole["best_valid_result"])
    assert resumed["tau_trace"] == whole["tau_trace"]
    state, _ = load_resume_checkpoint(last)
    assert state["epoch"] == resume_config["epochs"] - 1 and state["global_step"] == 2 * resume_config["epochs"]


@pytest.fixture(scope="module")
def finished(tiny_llm_dir, tmp_path_factory):
    """A finished 1-epoch run: its best folder and its resume folder."""
    cfg = {"llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 8, "train_batch_size": 8,
           "micro_batch_size": 4, "eval_max_users": 3, "num_beams": 10, "decode_batch_size": 3,
           "show_progress": False, "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))}
    result = run("LLMMSL", "ml-100k", config_dict=cfg)
    return result["saved_model_file"], result["saved_model_file"] + "-last", cfg


def _copy(folder, tmp_path):
    import shutil

    target = tmp_path / "copy-last"
    shutil.copytree(folder, target)
    return target


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "trainer_state.safetensors").write_bytes((d / "trainer_state.safetensors").read_bytes()[:-7]),
     "trainer_state.safetensors does not match its checksum"),
    (lambda d: (d / "trainer_state.json").write_text((d / "trainer_state.json").read_text()
                                                     .replace('"global_step": 1', '"global_step": 9')),
     "trainer_state.json does not match its checksum"),
    (lambda d: (d / "adapter_model.safetensors").unlink(), "adapter_model.safetensors is missing"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json is damaged"),
])
def test_damaged_resume_folder_is_refused(finished, tmp_path, damage, message):
    copy = _copy(finished[1], tmp_path)
    damage(copy)
    with pytest.raises(ConfigError, match=message) as err:
        load_resume_checkpoint(str(copy))
    assert "\n" not in str(err.value) and "start a new run" in str(err.value)


def test_best_model_folder_is_not_a_resume_checkpoint(finished):
    with pytest.raises(ConfigError, match="not a resume checkpoint"):
        load_resume_checkpoint(finished[0])


def _only_error_line(capsys) -> str:
    """The one ``error:`` line the CLI printed (last, after the loaders' progress bars), and no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and [line for line in lines if line.startswith("error")] == [lines[-1]]
    return lines[-1]


def test_cli_resume_errors_are_one_line(finished, tmp_path, capsys):
    _, last, cfg = finished
    copy = _copy(last, tmp_path)
    (copy / "trainer_state.safetensors").write_bytes(b"\0" * 64)
    base = ["--model=LLMMSL", "--dataset=ml-100k"] + [f"--{k}={v}" for k, v in cfg.items()]
    assert main(base + [f"--resume={copy}"]) == 2
    err = _only_error_line(capsys)
    assert err.startswith("error: cannot resume") and "checksum" in err
    assert main(base + [f"--resume={last}", "--learning_rate=0.5"]) == 2  # not the run it continues
    err = _only_error_line(capsys)
    assert err.startswith("error: ") and "learning_rate=0.0001" in err and "original settings" in err


COPY = "ml-copy"  # RecBole reads ml-100k from its own wheel whatever data_path says: a copy needs another name
COPY_CONFIG = {"load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
               "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
               "item_text_field": "movie_title"}


def _data_copy(tmp_path, append_rows: int = 0) -> str:
    """ml-100k's .inter and .item copied to ``tmp_path``/data/ml-copy, with the first ``append_rows`` interactions
    repeated a second later at the end of the .inter file (a few more interactions, the same items and titles)."""
    import recbole

    source = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    target = tmp_path / "data" / COPY
    target.mkdir(parents=True)
    for ext in ("inter", "item"):
        with open(os.path.join(source, f"ml-100k.{ext}"), encoding="utf-8") as f:
            (target / f"{COPY}.{ext}").write_text(f.read(), encoding="utf-8")
    if append_rows:
        lines = (target / f"{COPY}.inter").read_text().splitlines()
        extra = [line.split("\t") for line in lines[1:1 + append_rows]]
        rows = ["\t".join([f[0], f[1], f[2], str(int(f[3]) + 1)]) for f in extra]
        (target / f"{COPY}.inter").write_text("\n".join(lines + rows) + "\n")
    return str(tmp_path / "data")


@pytest.mark.parametrize("change, key", [
    ({"MAX_ITEM_LIST_LENGTH": 12}, "MAX_ITEM_LIST_LENGTH=10"),
    ({"prompt_instruction": "Recommend a film."}, "prompt_instruction="),
    ({"ats_eta": 0.5}, "ats_eta=0.25"),
    ({"eval_max_users": 4}, "eval_max_users=3"),
    ({"train_format": "sequence"}, "train_format='window'"),
])
def test_a_resume_that_would_continue_something_else_is_refused_with_the_key(finished, change, key):
    _, last, cfg = finished
    with pytest.raises(ConfigError, match=f"cannot resume from .*it was trained with {key}") as err:
        run("LLMMSL", "ml-100k", config_dict={**cfg, **change, "resume": last})
    assert "\n" not in str(err.value)


def test_a_resume_on_another_backbone_is_refused(finished, tiny_model_dir):
    _, last, cfg = finished
    with pytest.raises(ConfigError, match="it was trained with llm_path="):
        run("LLMMSL", "ml-100k", config_dict={**cfg, "llm_path": tiny_model_dir("qwen2"), "resume": last})


def test_a_resume_after_interactions_were_added_is_refused(tiny_llm_dir, tmp_path):
    cfg = {"llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 8, "train_batch_size": 8,
           "micro_batch_size": 4, "eval_max_users": 3, "num_beams": 10, "decode_batch_size": 3,
           "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"), "data_path": _data_copy(tmp_path),
           **COPY_CONFIG}
    result = run("LLMMSL", COPY, config_dict=cfg)
    changed = _data_copy(tmp_path / "more", append_rows=3)
    with pytest.raises(ConfigError, match="training split's interactions differ"):
        run("LLMMSL", COPY, config_dict={**cfg, "data_path": changed, "resume": result["saved_model_file"] + "-last"})
