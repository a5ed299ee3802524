"""The command line does what it says: sub-commands, RecBole keys, one-line errors, interrupts, the summary."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from recbole_msl.cli import main
from recbole_msl.errors import ConfigError
from recbole_msl.files import unique_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(config: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in config.items()]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and [line for line in lines if line.startswith("error")] == [lines[-1]], err
    return lines[-1]


@pytest.fixture(scope="module")
def trained_by_cli(tiny_llm_dir, tmp_path_factory):
    """One `recbole-msl train` run (tiny backbone); returns (printed summary, result file contents)."""
    folder = tmp_path_factory.mktemp("cli")
    config = {"llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 16, "train_batch_size": 8,
              "micro_batch_size": 4, "eval_max_users": 6, "num_beams": 10, "decode_batch_size": 3,
              "show_progress": False, "checkpoint_dir": str(folder / "saved"), "log_wandb": False}
    out = subprocess.run([sys.executable, "-m", "recbole_msl", "train", "--model=LLMMSL", "--dataset=ml-100k",
                          "--seed=7", *_args(config)], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result_file = re.search(r"everything \(tau trace, timings, metrics\): (\S+)", out.stdout).group(1)
    with open(result_file) as f:
        return out, json.load(f)


def test_train_prints_a_compact_summary_and_names_the_result_file(trained_by_cli):
    out, result = trained_by_cli
    text = out.stdout
    assert "LLMMSL on ml-100k: best validation ndcg@10" in text and "test on 6 rows" in text
    assert re.search(r"ndcg@10\s+\d\.\d{4}\s+\d\.\d{4}", text)  # the valid / test table
    assert re.search(r"time: data \d+ s, model \d+ s, training \d+ s, validation \d+ s, test \d+ s", text)
    assert re.search(r"tau over 2 steps: first 1\.500, last [\d.]+, min [\d.]+, max [\d.]+; ATS estimate", text)
    assert "tau_trace" not in text and "np.float64" not in out.stdout + out.stderr  # the trace is in the file
    assert len(result["tau_trace"]) == 2 and result["test_result"]["ndcg@10"] >= 0


def test_summary_shows_what_three_test_users_get(trained_by_cli):
    out, result = trained_by_cli
    examples = result["examples"]
    assert len(examples) == 3 and all(len(e["top"]) == 5 and e["history"] and e["target"] for e in examples)
    for example in examples:
        assert f'next: "{example["target"]}"' in out.stdout
        assert f'1. {example["top"][0]["score"]:8.3f}  "{example["top"][0]["title"]}"' in out.stdout


def test_a_cpu_run_prints_no_alarming_noise(trained_by_cli):
    out, _ = trained_by_cli
    text = out.stdout + out.stderr
    for noise in ("past_key_values", "deprecated", "use_gpu = True", "np.float64", "Converting and de-quantizing"):
        assert noise not in text, noise


def test_seed_is_a_recbole_key_not_an_abbreviation_of_seeds(trained_by_cli):
    """The run above passed --seed=7 to a single training run: the run's config used seed 7 (not the default
    2020), and its checkpoint keeps it for reloading."""
    _, result = trained_by_cli
    checkpoint = result["saved_model_file"]
    with open(os.path.join(checkpoint, "msl_state.json")) as f:
        assert json.load(f)["overrides"].get("seed") == 7
    stem = os.path.basename(checkpoint)[len("LLMMSL-"):]  # the run's log shares the checkpoint's <date>-<tag>
    with open(os.path.join(ROOT, "log", "LLMMSL", f"LLMMSL-ml-100k-{stem}.log"), encoding="utf-8") as f:
        assert re.findall(r"^seed = (\S+)$", f.read(), re.MULTILINE) == ["7"]  # the config it was seeded from


@pytest.mark.parametrize("flags, message", [
    (["--eval_max_users=0"], "eval_max_users must be a positive integer or ~, not 0"),
    (["--checkpoint_dir={file}/sub"], "cannot write to checkpoint_dir"),
    (["--profile=no-such-profile"], "unknown profile 'no-such-profile'"),
    (["--config_files=cpu-typo"], "config file cpu-typo does not exist"),
    (["--seeds=1,2"], "--seeds is for comparisons"),
])
def test_train_refuses_bad_flags_in_one_line_before_loading(flags, message, tiny_llm_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["train", "--model=LLMMSL", "--dataset=ml-100k", f"--llm_path={tiny_llm_dir}",
            f"--checkpoint_dir={tmp_path / 'saved'}"] + [f.replace("{file}", str(blocker)) for f in flags]
    assert main(args) == 2
    assert message in _one_error_line(capsys)


def test_profiles_resolve_by_name_from_anywhere(tmp_path, monkeypatch):
    from recbole_msl.recbole_seam.config import resolve_config_files

    monkeypatch.chdir(tmp_path)  # not the checkout: the packaged file is found
    (path,) = resolve_config_files(["cpu"])
    assert path.endswith(os.path.join("profiles", "cpu.yaml")) and os.path.isfile(path)


def test_interrupted_run_prints_the_command_that_resumes_it(tiny_llm_dir, tmp_path, capsys, monkeypatch):
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    train_epoch = LLMMSLTrainer._train_epoch

    def interrupted_in_second_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", interrupted_in_second_epoch)
    config = {"llm_path": tiny_llm_dir, "epochs": 2, "train_samples_per_epoch": 8, "train_batch_size": 8,
              "micro_batch_size": 8, "eval_max_users": 3, "num_beams": 10, "show_progress": False,
              "checkpoint_dir": str(tmp_path / "saved"), "log_wandb": False, "show_examples": 0}
    args = ["train", "--model=LLMMSL", "--dataset=ml-100k", *_args(config)]
    assert main(args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("interrupted; continue with: recbole-msl train --model=LLMMSL") and "Traceback" not in err
    resume = err[-1].split("--resume=")[-1]
    assert resume.endswith("-last") and os.path.isdir(resume)
    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", train_epoch)
    assert main(args + [f"--resume={resume}"]) == 0  # the printed command finishes the run


def test_sigterm_stops_a_background_run_that_ignores_ctrl_c(tmp_path):
    """A job started with ``nohup cmd &`` from a script inherits SIGINT ignored; ``kill`` (SIGTERM) must stop it
    cleanly: exit code 143 and the interrupted message, not a silent death or a run that goes on."""
    log = tmp_path / "out.txt"
    args = ["--model=SASRec", "--dataset=ml-100k", "--epochs=500", "--stopping_step=500", "--show_progress=False",
            "--MAX_ITEM_LIST_LENGTH=3", "--hidden_size=8", "--inner_size=16", "--n_layers=1", "--n_heads=1",
            f"--checkpoint_dir={tmp_path / 'saved'}"]  # a small SASRec: seconds per epoch
    with open(log, "w") as out:
        child = subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$0" "$@"',  # SIGINT ignored, as in the background
                                  sys.executable, os.path.join(ROOT, "run_recbole_msl.py"), *args], cwd=tmp_path,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:  # training has begun once the first epoch's best model is saved
        deadline = time.monotonic() + 600
        while not glob.glob(str(tmp_path / "saved" / "SASRec-*.pth")):
            assert child.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "SASRec saved no model within 600 s"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        time.sleep(1)
        assert child.poll() is None  # ignored, as in a background job: the reason SIGTERM must work
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    text = log.read_text()
    assert child.returncode == 143, text[-3000:]
    assert "Traceback" not in text and text.strip().splitlines()[-1].startswith("interrupted")


def test_sigterm_outside_training_exits_cleanly_and_restores_the_handler(tmp_path, capsys, monkeypatch):
    from recbole_msl import quick_start

    def terminated_while_loading(config, cache):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next Python instruction
        raise AssertionError("SIGTERM did not interrupt the run")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(quick_start, "_load_dataset", terminated_while_loading)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", "--model=SASRec", "--dataset=ml-100k", f"--checkpoint_dir={tmp_path / 'saved'}"]) == 143
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted outside training")
    assert signal.getsignal(signal.SIGTERM) is before


def test_save_folders_are_unique_within_a_second(tmp_path):
    base = str(tmp_path / "LLMMSL-Nov-30-2026_10-00-00")
    names = {unique_path(base) for _ in range(50)} | {unique_path(base + ".pth") for _ in range(50)}
    assert len(names) == 100 and all(re.search(r"-[0-9a-f]{6}(\.pth)?$", n) for n in names)
    taken = unique_path(base)
    os.makedirs(taken)
    assert unique_path(base) != taken


@pytest.mark.parametrize("argv", [["recommend", "--checkpoint=x", "--history=1", "--topk=0"],
                                  ["recommend", "--checkpoint=x", "--history=1", "--topk=-1"],
                                  ["recommend", "--checkpoint=x", "--history=1", "--topk=ten"]])
def test_recommend_refuses_a_bad_topk_in_one_line(argv, capsys):
    assert main(argv) == 2
    assert "--topk must be a positive integer" in _one_error_line(capsys)


def test_python_dash_m_cli_does_not_exit_silently():
    done = subprocess.run([sys.executable, "-m", "recbole_msl.cli"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 2 and "recbole-msl train" in done.stdout


def test_every_subcommand_has_help(capsys):
    for command in ("train", "compare", "recommend", "convert"):
        try:
            code = main([command, "--help"])
        except SystemExit as stop:  # argparse's own --help
            code = stop.code
        assert code == 0, command
    text = capsys.readouterr().out
    assert "--include_history" in text and "--profile" in text and "amazon2018" in text


def test_recommender_refuses_a_string_history(trained_recommender):
    with pytest.raises(ConfigError, match="history must be a list of item ids"):
        trained_recommender.recommend("B00X12")
    with pytest.raises(ConfigError, match="topk must be a positive integer"):
        trained_recommender.recommend(["1"], topk=0)
    with pytest.raises(ConfigError, match="titles containing it: 1 \\(Toy Story"):
        trained_recommender.recommend(["Toy Story"])


def test_evaluation_progress_bar_counts_users(tiny_checkpoint, capsys):
    """The bar of a full-sort evaluation moves by users ranked (6 here), not by RecBole's batches of 64."""
    from recbole_msl.model.llmmsl import LLMMSL
    from recbole_msl.recbole_seam.config import Config
    from recbole_msl.recbole_seam.data import create_dataset, data_preparation
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    result, overrides = tiny_checkpoint
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={**overrides, "show_progress": True})
    train, valid, _ = data_preparation(config, create_dataset(config))
    trainer = LLMMSLTrainer(config, LLMMSL(config, train._dataset))
    trainer.eval_collector.data_collect(train)
    capsys.readouterr()
    trainer.evaluate(valid, model_file=result["saved_model_file"], show_progress=True)
    err = capsys.readouterr().err
    assert re.search(r"Evaluate.*6/6 \[.*user", err), err[-500:]
