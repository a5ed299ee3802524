"""Lost work: a stop, a full disk, a diverging loss or a second copy of a command never throws away finished work.

* a stop (SIGTERM at a scheduler's limit, Ctrl-C) during an epoch's validation keeps that epoch's training:
  the resume state is written as soon as training of the epoch ends, and a resume re-validates;
* ``convert --overwrite`` replaces only the files the converter writes (a user's notes stay);
* two copies of one comparison in one results folder: the second is refused, naming the first's process;
* a full disk while saving a checkpoint, or a loss that becomes NaN: one line, no half-written folder, and the
  last good resume folder is kept.
"""

from __future__ import annotations

import errno
import glob
import json
import os

import pytest
import torch

from recbole_msl import run
from recbole_msl.cli import main
from recbole_msl.quick_start import RunInterrupted
from recbole_msl.trainer import LLMMSLTrainer
from recbole_msl.trainer.resume import load_resume_checkpoint


def _last_folders(checkpoint_dir) -> list[str]:
    return glob.glob(os.path.join(str(checkpoint_dir), "*-last"))


def _leftovers(checkpoint_dir) -> list[str]:
    """Staging folders of an interrupted write (``.tmp-...``, ``.old-...``)."""
    return [n for n in os.listdir(checkpoint_dir) if n.startswith(".")] if os.path.isdir(checkpoint_dir) else []


# ----------------------------------------------------------------- a stop during validation
def test_stop_during_validation_keeps_the_epoch_and_resume_only_revalidates(tiny_run_config, tmp_path, monkeypatch):
    whole = run("LLMMSL", "ml-100k", config_dict={**tiny_run_config, "checkpoint_dir": str(tmp_path / "whole")})

    real_valid = LLMMSLTrainer._valid_epoch

    def stopped(self, *args, **kwargs):  # what SIGTERM does (stopping.py): KeyboardInterrupt at the next instruction
        raise KeyboardInterrupt("signal SIGTERM")

    monkeypatch.setattr(LLMMSLTrainer, "_valid_epoch", stopped)
    cut = {**tiny_run_config, "checkpoint_dir": str(tmp_path / "cut")}
    with pytest.raises(RunInterrupted) as info:
        run("LLMMSL", "ml-100k", config_dict=cut)
    folder = info.value.resume_folder
    assert folder is not None, "the epoch's training was lost: no resume folder before validation"
    state, _ = load_resume_checkpoint(folder)
    assert state["epoch"] == 0 and state["global_step"] == 2 and state["validated"] is False

    monkeypatch.setattr(LLMMSLTrainer, "_valid_epoch", real_valid)
    steps = []
    real_step = LLMMSLTrainer._optimizer_step
    monkeypatch.setattr(LLMMSLTrainer, "_optimizer_step", lambda self, batch: steps.append(1) or real_step(self, batch))
    resumed = run("LLMMSL", "ml-100k", config_dict={**cut, "resume": folder})
    assert steps == [], "the resumed run trained the epoch again"
    assert dict(resumed["best_valid_result"]) == dict(whole["best_valid_result"])
    assert dict(resumed["test_result"]) == dict(whole["test_result"])
    state, _ = load_resume_checkpoint(folder)
    assert state["validated"] is True and state["epoch"] == 0


# ----------------------------------------------------------------- convert --overwrite
def _amazon2018(tmp_path):
    from test_convert import _amazon2018_files

    return _amazon2018_files(tmp_path)


def test_convert_overwrite_replaces_only_the_converters_files(tmp_path):
    from recbole_msl.convert import convert

    files = _amazon2018(tmp_path)
    out = tmp_path / "out"
    convert("amazon2018", str(out), "b", **files)
    folder = out / "b"
    (folder / "NOTES.txt").write_text("my notes\n")
    (folder / "plots").mkdir()
    (folder / "plots" / "a.png").write_bytes(b"png")
    (folder / "b.train.inter").write_text("a stale split of an earlier sliding-window conversion\n")
    (folder / "b.item").write_text("old titles\n")
    convert("amazon2018", str(out), "b", overwrite=True, **files)
    assert (folder / "NOTES.txt").read_text() == "my notes\n"
    assert (folder / "plots" / "a.png").read_bytes() == b"png"
    assert (folder / "b.item").read_text() != "old titles\n"  # its own files are replaced
    assert not (folder / "b.train.inter").exists()  # a file the converter writes, from another layout: stale
    assert sorted(os.listdir(folder)) == ["NOTES.txt", "b.convert.json", "b.inter", "b.item", "b.yaml", "plots"]
    assert sorted(os.listdir(out)) == ["b"]  # no staging folder left


# ----------------------------------------------------------------- two copies of one comparison
def _tiny_spec(tmp_path, runs):
    from test_bad_input import write_atomic

    write_atomic(str(tmp_path / "data"), "set")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(json.dumps({
        "dataset": "set", "seeds": [1],
        "config": {"data_path": str(tmp_path / "data"), "epochs": 1, "show_progress": False, "log_wandb": False,
                   "item_text_field": "title", "MAX_ITEM_LIST_LENGTH": 5,
                   "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}},
        "runs": runs}))
    return str(spec)


SASREC = {"name": "sasrec", "model": "SASRec", "config": {"hidden_size": 8, "inner_size": 16, "n_layers": 1,
                                                          "n_heads": 1}}


def test_second_copy_of_a_comparison_is_refused_naming_the_first(tmp_path, monkeypatch, capsys):
    from recbole_msl.compare.lock import comparison_lock

    monkeypatch.chdir(tmp_path)
    spec = _tiny_spec(tmp_path, [SASREC])
    folder = tmp_path / "results" / "tiny"
    with comparison_lock(str(folder)):  # the first copy, still running
        assert main(["compare", f"--comparison={spec}", f"--results_dir={tmp_path / 'results'}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: comparison tiny is already running"), err
        assert f"process {os.getpid()}" in err[0] and "started" in err[0]
        assert not (folder / "runs").exists()  # nothing ran
        # --report_only reads only finished records: allowed beside a running comparison
        assert main(["compare", f"--comparison={spec}", f"--results_dir={tmp_path / 'results'}", "--report_only"]) == 0
    capsys.readouterr()
    assert main(["compare", f"--comparison={spec}", f"--results_dir={tmp_path / 'results'}"]) == 0  # released


def test_comparison_lock_is_released_when_its_process_dies(tmp_path):
    import subprocess
    import sys

    from recbole_msl.compare.lock import comparison_lock
    from recbole_msl.errors import ComparisonLockedError

    folder = str(tmp_path / "cmp")
    os.makedirs(folder)
    holder = ("import fcntl, json, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
              "f.truncate(0); f.write(json.dumps({'pid': os.getpid(), 'started': '2026-12-01 10:00:00'})); "
              "f.flush(); print('locked', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", holder, os.path.join(folder, ".lock")], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(ComparisonLockedError, match=fr"process {child.pid} \(started 2026-12-01 10:00:00"), \
                comparison_lock(folder):
            pass
    finally:
        child.kill()
        child.wait()
    with comparison_lock(folder):  # the kernel dropped the dead process's lock
        pass


# ----------------------------------------------------------------- full disk while saving a checkpoint
def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_the_last_good_state(
        tiny_run_config, tmp_path, monkeypatch, capsys):
    import safetensors.torch

    real = safetensors.torch.save_file
    calls = []

    def full_disk(tensors, filename, *args, **kwargs):  # the writer of the resume state's tensors
        calls.append(filename)
        if len(calls) >= 2:
            real(tensors, filename, *args, **kwargs)  # half a file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "saved"
    args = ["--model=LLMMSL", "--dataset=ml-100k"] + [f"--{k}={v}" for k, v in
                                                       {**tiny_run_config, "epochs": 2}.items()]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: no space left on the device while writing the resume state"), err[-1]
    assert str(saved) in err[-1] and "--checkpoint_dir" in err[-1]
    assert _leftovers(saved) == []  # no half-written folder
    (last,) = _last_folders(saved)
    assert f"the last complete resume folder, {last} (after epoch 0, before its validation), is kept" in err[-1]
    load_resume_checkpoint(last)  # intact: it verifies against its manifest


def test_disk_full_while_the_adapter_tensors_are_written_is_one_line(tiny_run_config, tmp_path, monkeypatch,
                                                                        capsys):
    """safetensors' writer reports a full disk as a SafetensorError, not an OSError: still one line, no leftovers."""
    from safetensors import SafetensorError

    from recbole_msl.model.llmmsl import LLMMSL

    def full_disk(self, folder):
        with open(os.path.join(folder, "adapter_model.safetensors"), "wb") as f:
            f.write(b"half")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    monkeypatch.setattr(LLMMSL, "save_adapter", full_disk)
    monkeypatch.chdir(tmp_path)
    args = ["--model=LLMMSL", "--dataset=ml-100k"] + [f"--{k}={v}" for k, v in tiny_run_config.items()]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: no space left on the device while writing the "), err[-1]
    assert "--checkpoint_dir" in err[-1]
    assert _leftovers(tmp_path / "saved") == []


def test_disk_full_in_an_atomic_write_is_a_disk_write_error(tmp_path, monkeypatch):
    import tempfile

    from recbole_msl.errors import DiskWriteError
    from recbole_msl.files import write_json

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(DiskWriteError, match=r"no space left on the device while writing .*result\.json") as info:
        write_json(str(tmp_path / "result.json"), {"a": 1})
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- a loss that becomes NaN
def test_nan_loss_names_the_step_and_the_cause_and_keeps_the_last_resume_folder(tiny_run_config, tmp_path,
                                                                                 monkeypatch):
    from recbole_msl.errors import TrainingDivergedError
    from recbole_msl.model.llmmsl import LLMMSL

    real = LLMMSL.loss_terms
    calls = []

    def diverging(self, interaction):
        loss, count = real(self, interaction)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 4 else loss), count  # epoch 1's first step (2 micro-batches a step)

    monkeypatch.setattr(LLMMSL, "loss_terms", diverging)
    cfg = {**tiny_run_config, "epochs": 2, "eval_step": 2}
    with pytest.raises(TrainingDivergedError) as info:
        run("LLMMSL", "ml-100k", config_dict=cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("the training loss became nan at optimizer step 3 (epoch 1); the likely cause is a "
                              "learning rate too high (learning_rate=0.0001; with llm_dtype float32 it is no float16 "
                              "overflow): lower learning_rate, e.g. learning_rate=1e-05"), message
    (last,) = _last_folders(tmp_path / "saved")
    assert f"the last good resume folder, {last} (after epoch 0), is kept" in message
    state, tensors = load_resume_checkpoint(last)
    assert state["epoch"] == 0 and state["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    assert _leftovers(tmp_path / "saved") == []
