"""A comparison run that trains exactly what a learning curve's run trained evaluates the curve's final adapter:
the same ranking as training it again, without the training."""

from __future__ import annotations

import glob
import json
import os

import yaml
from safetensors.torch import load_file

from recbole_msl.cli import main
from recbole_msl.compare.curve_adapters import curve_adapter
from recbole_msl.compare.spec import load_spec


def _adapter(folder: str) -> dict:
    (path,) = glob.glob(os.path.join(folder, "**", "*.safetensors"), recursive=True)
    return load_file(path)


def _write(path, spec) -> str:
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_run_trained_like_a_curve_takes_its_adapter_and_ranks_as_if_trained(tmp_path, tiny_run_config, monkeypatch):
    """Really trained on the tiny backbone: the curve validates after each of its 2 epochs; the comparison's run
    (same settings, 2 epochs, validated once, other validation users) loads the curve's adapter instead of
    training and ranks every test user exactly as the same run trained from scratch does. A run validated after
    each epoch, or with another learning rate, would train its own."""
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    train_epoch, trained = LLMMSLTrainer._train_epoch, []

    def counted(self, train_data, epoch_idx, *args, **kwargs):
        trained.append(epoch_idx)
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", counted)
    shared = {k: v for k, v in tiny_run_config.items() if k not in ("eval_max_users", "epochs", "checkpoint_dir")}
    shared |= {"MAX_ITEM_LIST_LENGTH": 10, "train_samples_per_epoch": 4, "eval_history": 5, "learning_rate": 0.01,
               "train_format": "sequence", "llm_loss": "msl", "tau": "ats"}
    curve = _write(tmp_path / "c.yaml", {"name": "c", "dataset": "ml-100k", "curve": [4, 8],
                                         "config": {**shared, "eval_sample_users": {"valid": 2}},
                                         "runs": [{"name": "a", "model": "LLMMSL"}]})
    run = {"name": "seq", "model": "LLMMSL", "config": {"epochs": 2, "eval_step": 2}}
    plain = {"name": "p", "dataset": "ml-100k", "config": {**shared, "eval_sample_users": {"valid": 1, "test": 3}},
             "runs": [run]}
    taking = _write(tmp_path / "p.yaml", {**plain, "curve_adapters": [curve]})
    retraining = _write(tmp_path / "again.yaml", plain)
    flags = ["--allow_unknown_keys=True"]
    assert main(["compare", f"--comparison={curve}", f"--results_dir={tmp_path / 'res'}"] + flags) == 0
    assert trained == [0, 1]
    assert main(["compare", f"--comparison={taking}", f"--results_dir={tmp_path / 'res'}"] + flags) == 0
    assert trained == [0, 1]  # nothing trained: the curve's adapter was evaluated
    assert main(["compare", f"--comparison={retraining}", f"--results_dir={tmp_path / 'other'}"] + flags) == 0
    assert trained == [0, 1, 0, 1]

    took = json.loads((tmp_path / "res" / "p" / "runs" / "seq--seed2020.json").read_text())
    own = json.loads((tmp_path / "other" / "p" / "runs" / "seq--seed2020.json").read_text())
    assert took["curve_adapter"]["run"] == "a" and took["curve_adapter"]["sequences"] == 8
    assert took["curve_adapter"]["training_cpu_s"] > 0 and "curve_adapter" not in own
    assert took["test_hits"]["users"] == own["test_hits"]["users"] and len(own["test_hits"]["users"]) == 3
    assert took["test_hits"] == own["test_hits"] and took["test"] == own["test"]  # the same adapter, the same ranks
    taken, retrained = _adapter(took["saved_model_file"]), _adapter(own["saved_model_file"])
    assert taken.keys() == retrained.keys() and all((taken[k] == retrained[k]).all() for k in taken)  # bit for bit
    assert any(k.endswith("lora_B.weight") and taken[k].abs().sum() > 0 for k in taken)  # and really trained
    assert took["tau_trace"] == own["tau_trace"] and len(own["tau_trace"]) == 2  # ATS's tau, epoch by epoch
    markdown = (tmp_path / "res" / "p" / "p.md").read_text()
    assert "the final adapter of a in c, trained exactly as this run trains" in markdown

    spec = load_spec(taking)
    seq = spec.runs[0]
    args = (2020, "ml-100k", flags, [curve], str(tmp_path / "res"))
    assert curve_adapter(seq, *args) is not None
    for change in ({"eval_step": 1}, {"learning_rate": 0.02}, {"epochs": 3, "eval_step": 3}, {"llm_loss": "lml"}):
        other = type(seq)(**{**seq.__dict__, "config": {**seq.config, **change}})
        assert curve_adapter(other, *args) is None, change
    assert curve_adapter(seq, 2021, "ml-100k", flags, [curve], str(tmp_path / "res")) is None  # the curve's seed only
    assert curve_adapter(seq, 2020, "ml-100k", flags, [curve], str(tmp_path / "other")) is None  # no curve folder there


def test_curve_adapters_names_learning_curves_from_a_comparison_that_tests(tmp_path):
    """One line before anything runs: a name that is no curve, a curve naming one, a comparison naming itself."""
    import pytest

    from recbole_msl.errors import ConfigError

    runs = [{"name": "a", "model": "LLMMSL"}, {"name": "s", "model": "SASRec"}]
    plain = _write(tmp_path / "plain.yaml", {"name": "plain", "dataset": "ml-100k", "runs": runs})
    curve = _write(tmp_path / "curve.yaml", {"name": "curve", "dataset": "ml-100k", "curve": [4], "runs": runs})
    ok = _write(tmp_path / "ok.yaml", {"name": "ok", "dataset": "ml-100k", "runs": runs, "curve_adapters": [curve]})
    assert load_spec(ok).curve_adapters == [curve]
    cases = {"not_curve": {"curve_adapters": [plain]}, "from_curve": {"curve": [4], "curve_adapters": [curve]},
             "itself": {"curve_adapters": [str(tmp_path / "itself.yaml")]}}
    for name, extra in cases.items():
        path = _write(tmp_path / f"{name}.yaml", {"name": name, "dataset": "ml-100k", "runs": runs, **extra})
        with pytest.raises(ConfigError, match="curve_adapters names") as err:
            load_spec(path)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="neither a file nor a shipped comparison"):
        load_spec(_write(tmp_path / "missing.yaml", {"name": "m", "dataset": "ml-100k", "runs": runs,
                                                     "curve_adapters": ["no-such-curve"]}))
