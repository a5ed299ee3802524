"""Curve schedules: a setting's ``cost`` (equal CPU time in a settings search) and ``stop_when_flat_from`` (every
full pass until validation stops rising): what they train, where they stop, and what the report says."""

from __future__ import annotations

import json

import pytest
import yaml

from recbole_msl.cli import main
from recbole_msl.compare import curve
from recbole_msl.compare.curve_schedule import expected_points, flat_stop, trained_sequences
from recbole_msl.compare.spec import load_spec
from recbole_msl.errors import ConfigError


def _points(*values):
    """Curve points at 0, 8, 16, ... with these mean NDCG@10 values."""
    return [{"sequences": 8 * i, "stats": {"ndcg@10": {"mean": v, "se": 0.0}}} for i, v in enumerate(values)]


def test_a_costlier_setting_trains_fewer_sequences_at_each_point():
    assert trained_sequences(652, None) == 652 and trained_sequences(0, 1.38) == 0
    assert trained_sequences(652, 1.38) == 472 and trained_sequences(652, 1.62) == 402
    assert trained_sequences(652, 0.5) == 1304 and trained_sequences(1, 10.0) == 1  # never zero training


def test_the_flat_rule_stops_at_the_first_point_from_its_start_that_does_not_rise():
    assert flat_stop(_points(0.01, 0.02, 0.015, 0.03), None) is None  # no rule
    assert flat_stop(_points(0.01, 0.02, 0.015, 0.03), 16) == 16  # 0.015 is not above 0.02
    assert flat_stop(_points(0.01, 0.02, 0.015, 0.03), 24) is None  # before its start a dip does not stop it
    assert flat_stop(_points(0.01, 0.02, 0.02), 16) == 16  # equal is not a rise
    assert flat_stop(_points(0.03, 0.01, 0.02), 16) == 16  # below the untrained point counts as flat
    assert flat_stop(_points(0.01, 0.02, 0.03), 16) is None  # still rising: the curve goes on
    assert expected_points([0, 8, 16, 24], 16) == [0, 8, 16] and expected_points([0, 8], None) == [0, 8]


@pytest.mark.parametrize("extra, message", [
    ({"runs": [{"name": "a", "model": "LLMMSL", "cost": 1.4}]}, "only an LLMMSL run of a learning curve uses"),
    ({"curve": [8], "runs": [{"name": "s", "model": "SASRec", "cost": 1.4}]}, "only an LLMMSL run"),
    ({"curve": [8], "runs": [{"name": "a", "model": "LLMMSL", "cost": 0}]}, "as a positive number"),
    ({"curve": [8], "runs": [{"name": "a", "model": "LLMMSL", "cost": "fast"}]}, "as a positive number"),
    ({"curve": [8], "runs": [{"name": "a", "model": "LLMMSL", "cost": float("inf")}]}, "as a positive number"),
    ({"curve": [0, 8], "stop_when_flat_from": 0, "runs": [{"name": "a", "model": "LLMMSL"}]},
     "must be one of the curve's positive points (8)"),
    ({"stop_when_flat_from": 8, "runs": [{"name": "a", "model": "LLMMSL"}]}, "no curve given"),
])
def test_bad_schedule_keys_are_refused_before_anything_runs(tmp_path, extra, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": "ml-100k", **extra}))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(str(path))


def test_cost_and_flat_rule_in_a_real_curve(tmp_path, tiny_run_config, capsys, monkeypatch):
    """Really trained on the tiny backbone, with scripted validation values: the costly run trains half the
    sequences at each point and is paired at the reference's point numbers; the flat rule ends a run at the
    first point that does not rise, a rerun finds it finished, and the report (also rebuilt alone) says so."""
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    train_epoch, trained = LLMMSLTrainer._train_epoch, []

    def counted(self, train_data, epoch_idx, *args, **kwargs):
        trained.append((self.config["name_for_test"], epoch_idx))
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    measure, scripted = curve._measure, {"flat": [0.02, 0.01, 0.03], "costly": [0.01, 0.02, 0.03]}

    def scripted_measure(trainer, model, valid_data, sequences, epoch):
        point = measure(trainer, model, valid_data, sequences, epoch)
        point["stats"]["ndcg@10"]["mean"] = scripted[trainer.config["name_for_test"]][sequences // 8 - 1]
        return point

    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", counted)
    monkeypatch.setattr(curve, "_measure", scripted_measure)
    shared = {k: v for k, v in tiny_run_config.items() if k not in ("eval_max_users", "epochs")}
    spec = {"name": "sched", "dataset": "ml-100k", "curve": [8, 16, 24], "stop_when_flat_from": 16,
            "config": {**shared, "MAX_ITEM_LIST_LENGTH": 10, "train_samples_per_epoch": 4,
                       "eval_sample_users": {"valid": 6}},
            "runs": [{"name": "flat", "model": "LLMMSL", "config": {"name_for_test": "flat"}},
                     {"name": "costly", "model": "LLMMSL", "cost": 2, "config": {"name_for_test": "costly"}}]}
    path = tmp_path / "sched.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = ["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'res'}", "--allow_unknown_keys=True"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert trained == [("flat", 0), ("flat", 1), ("flat", 2), ("flat", 3),  # 16 sequences, then stopped
                       ("costly", 0), ("costly", 1), ("costly", 2)]  # 4, 8, 12 sequences: half of 8, 16, 24
    assert "flat stopped at 16 sequences: its validation NDCG@10 there was not above its best earlier point" in printed
    assert "| costly | 8 (trains 4) |" in printed and "| costly | 24 (trains 12) |" in printed
    assert "| costly vs flat at 16 |" in printed and "costly vs flat at 24" not in printed  # paired by point
    runs = tmp_path / "res" / "sched" / "runs"
    flat = json.loads((runs / "curve-flat--seed2020.json").read_text())
    costly = json.loads((runs / "curve-costly--seed2020.json").read_text())
    assert [p["sequences"] for p in flat["points"]] == [8, 16] and flat["stopped"]["at"] == 16
    assert [(p["sequences"], p["trained_sequences"]) for p in costly["points"]] == [(8, 4), (16, 8), (24, 12)]
    assert costly["signature"] != flat["signature"]

    assert main(args) == 0  # nothing left to train: the flat run is finished, not pending
    assert "curve flat seed 2020: finished earlier" in capsys.readouterr().out and len(trained) == 7
    assert main(args + ["--report_only"]) == 0
    report = json.loads((tmp_path / "res" / "sched" / "sched.json").read_text())
    assert report["pending"] == [] and report["stopped"] == [
        {"run": "flat", "seed": 2020, "at": 16, "stop_when_flat_from": 16}]

    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "stop_when_flat_from"}))
    assert main(args + ["--report_only"]) == 0  # without the rule the stopped run lacks its last point:
    report = json.loads((tmp_path / "res" / "sched" / "sched.json").read_text())  # in progress, drawn and tested
    assert report["pending"] == [{"run": "flat", "seed": 2020, "measured_to": 16}]
    assert [c["run"] for c in report["curves"]] == ["flat", "costly"]
    assert any((t["run"], t["against"], t["sequences"]) == ("costly", "flat", 16) for t in report["tests"])
    markdown = (tmp_path / "res" / "sched" / "sched.md").read_text()
    assert markdown.startswith("**Partial report: no finished record yet for flat (seed 2020, in progress: "
                               "measured to 16).**")
