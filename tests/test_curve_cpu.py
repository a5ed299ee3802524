"""Learning curves at equal CPU time: each point's training CPU (validations left out), a chart against it, and
published curves drawn beside (the window format's beside the sequence format's)."""

import json
import os

import pytest
import yaml

from recbole_msl.compare.curve_chart import cpu_chart
from recbole_msl.compare.curve_markdown import curve_markdown
from recbole_msl.compare.curve_stats import training_cpu_seconds, validation_estimate
from recbole_msl.compare.spec import load_spec
from recbole_msl.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _point(sequences, cpu_s, **extra):
    stats = {m: {"mean": 0.01, "se": 0.002} for m in ("ndcg@10", "hit@10")}
    return {"sequences": sequences, "cpu_s": cpu_s, "stats": {**stats, "users": 943}, "tau": 1.5, **extra}


def test_timed_validations_are_left_out_of_the_training_time():
    points = [_point(0, 60.0, valid_cpu_s=60.0), _point(100, 200.0, valid_cpu_s=50.0),
              _point(200, 330.0, valid_cpu_s=55.0)]
    assert training_cpu_seconds(points) == [0.0, 90.0, 165.0]  # 200 - 60 - 50; 330 - 60 - 50 - 55


def test_untimed_validations_cost_what_an_untrained_point_cost():
    own = [_point(0, 60.0), _point(100, 200.0), _point(200, 330.0)]
    assert training_cpu_seconds(own) == [0.0, 80.0, 150.0]  # each validation taken as 60 s
    copied = [_point(0, 0.5, measured_in="msl"), _point(100, 150.0), _point(200, 270.0)]
    assert training_cpu_seconds(copied) == [0.0, None, None]  # nothing to estimate a validation from
    assert training_cpu_seconds(copied, validation_estimate([{"points": own}, {"points": copied}])) == \
        [0.0, 90.0, 150.0]


def test_the_published_window_curve_is_drawn_beside_at_equal_cpu_time(tmp_path):
    with open(os.path.join(ROOT, "docs", "results", "ml-100k-curve-8k.json"), encoding="utf-8") as f:
        window = json.load(f)["curves"]
    mine = [{"run": "msl-ats", "seed": 2020, "points": [_point(0, 900.0, valid_cpu_s=900.0), _point(163, 2400.0, valid_cpu_s=880.0)]}]
    path = tmp_path / "cpu.png"
    assert cpu_chart([(None, mine), ("ml-100k-curve-8k", window)], str(path), "test")
    assert path.stat().st_size > 10_000
    estimate = validation_estimate(window)
    assert all(t is not None and t >= 0 for c in window for t in training_cpu_seconds(c["points"], estimate))
    report = {"curves": mine, "lines": [], "tests": [], "precision": []}
    assert "| msl-ats | 163 | 0.0100 ± 0.0020 | 0.0100 ± 0.0020 | 943 | 1.500 | 40 min | 10 min |" in \
        curve_markdown(report)


def test_beside_must_name_a_published_curve(tmp_path):
    with open(os.path.join(ROOT, "properties", "comparisons", "ml-100k-sequence-curve.yaml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    assert spec["beside"] == ["ml-100k-curve-8k"] and load_spec("ml-100k-sequence-curve").beside == spec["beside"]
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump({**spec, "beside": ["no-such-curve"]}))
    with pytest.raises(ConfigError, match="beside names no-such-curve, which has no report in docs/results/"):
        load_spec(str(path))


def test_an_estimated_cpu_time_is_marked_and_explained():
    estimated = {"run": "msl-ats", "seed": 2020, "cpu_note": "5 epochs' CPU estimated",
                 "points": [_point(0, 900.0, valid_cpu_s=900.0), _point(163, 2400.0, valid_cpu_s=880.0,
                                                                          cpu_estimated_s=300.0)]}
    markdown = curve_markdown({"curves": [estimated], "lines": [], "tests": [], "precision": []})
    assert "| 1.500 | ≈ 40 min | ≈ 10 min |" in markdown and "≈ (msl-ats): 5 epochs' CPU estimated" in markdown
    plain = curve_markdown({"curves": [_without_note(estimated)], "lines": [], "tests": [], "precision": []})
    assert "≈" not in plain


def _without_note(curve):
    return {"run": curve["run"], "seed": curve["seed"],
            "points": [{k: v for k, v in p.items() if k != "cpu_estimated_s"} for p in curve["points"]]}


def test_a_stopped_curve_keeps_its_epochs_and_their_cpu_time(tmp_path, tiny_run_config, monkeypatch):
    """The record's CPU time is written after every epoch, not only at points: a process stopped before the first
    trained point (a settings search's is 8 epochs in; a session's end) keeps the finished epochs' CPU time, and
    the next attempt continues from the last finished epoch (it had started again from nothing) and adds to it.
    A changed setting never resumes another setting's state: it trains from its first epoch."""
    from recbole_msl.cli import main
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    train_epoch, trained = LLMMSLTrainer._train_epoch, []

    def stop_at(stop: int):
        def stopping(self, train_data, epoch_idx, *args, **kwargs):
            if epoch_idx == stop:
                trained.append("stop")
                raise KeyboardInterrupt  # what a killed process amounts to: nothing after this point runs
            trained.append(epoch_idx)
            return train_epoch(self, train_data, epoch_idx, *args, **kwargs)
        return stopping

    shared = {k: v for k, v in tiny_run_config.items() if k not in ("eval_max_users", "epochs")}
    spec = {"name": "stop", "dataset": "ml-100k", "curve": [12],
            "config": {**shared, "MAX_ITEM_LIST_LENGTH": 10, "train_samples_per_epoch": 4,
                       "eval_sample_users": {"valid": 2}},
            "runs": [{"name": "msl", "model": "LLMMSL"}]}
    path = tmp_path / "stop.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = ["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'res'}"]
    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", stop_at(2))
    assert main(args) != 0  # "interrupted; run the same command again to continue"
    assert trained == [0, 1, "stop"]
    record_path = tmp_path / "res" / "stop" / "runs" / "curve-msl--seed2020.json"
    stopped = json.loads(record_path.read_text())
    assert stopped["points"] == [] and stopped["cpu_s"] > 0  # two epochs' CPU time kept, no point yet
    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", stop_at(-1))
    assert main(args) == 0
    assert trained == [0, 1, "stop", 2]  # continued with the third epoch only
    resumed = json.loads(record_path.read_text())
    assert [p["sequences"] for p in resumed["points"]] == [12]
    assert resumed["points"][0]["cpu_s"] > stopped["cpu_s"] + resumed["points"][0]["valid_cpu_s"]

    trained.clear()
    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", stop_at(0))
    assert main(args + ["--learning_rate=0.001"]) != 0  # another setting: its first epoch, not the old state's
    assert trained == ["stop"]
