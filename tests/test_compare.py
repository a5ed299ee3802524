"""Comparisons: the report (table, CSV, JSON, chart), resume, failure rows, statistics, and one real run."""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import pytest
import torch
import yaml

from recbole_msl.cli import main
from recbole_msl.compare import runner, store
from recbole_msl.compare.curve_adapters import same_training_runs
from recbole_msl.compare.curve_schedule import trained_sequences
from recbole_msl.compare.spec import load_spec, parse_seeds, spec_from_models
from recbole_msl.compare.stats import paired_test
from recbole_msl.compare.user_metrics import per_user_metrics
from recbole_msl.errors import ConfigError
from recbole_msl.evaluation.records import encode_hits, split_fingerprint

N_USERS, MAXK = 400, 10


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _fake_hits(hit_rate: float, seed: int) -> np.ndarray:
    """A rec.topk matrix: each user's single target lands at a random rank with probability hit_rate."""
    rng = np.random.default_rng(seed)
    matrix = np.zeros((N_USERS, MAXK + 1), dtype=np.int64)
    hit = rng.random(N_USERS) < hit_rate
    matrix[np.flatnonzero(hit), rng.integers(0, MAXK, size=int(hit.sum()))] = 1
    matrix[:, -1] = 1
    return matrix


class FakeRuns:
    """Stands in for quick_start.run: hit rate from the run's config, results consistent with RecBole's metrics."""

    def __init__(self, interrupt_after=None):
        self.calls = []
        self.interrupt_after = interrupt_after

    def __call__(self, model, dataset, config_file_list=None, config_dict=None, saved=True, cmd_args=None,
                 dataset_cache=None, keep_test_hits=False):
        if self.interrupt_after is not None and len(self.calls) == self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append((config_dict.get("name_for_test"), config_dict["seed"]))
        self.trained_from = getattr(self, "trained_from", [])
        self.trained_from.append(config_dict.get("trained_checkpoint"))
        if config_dict.get("fail"):
            raise ConfigError("lora_r must be a positive integer, not -1")
        if config_dict.get("oom"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        encoded = encode_hits(_fake_hits(config_dict["hit_rate"], 1000 * config_dict["seed"] + len(self.calls)))
        values = per_user_metrics(encoded, ["ndcg", "hit"], [5, 10])
        test = {k: round(float(v.mean()), 4) for k, v in values.items()}
        users = [str(u) for u in range(N_USERS)]
        weights = config_dict.get("assistant_weight")
        guide = None
        if config_dict.get("assistant"):  # a grid whose validation score grows with the weight: the largest is kept
            weights = weights if isinstance(weights, list) else [weights]
            guide = {"model": config_dict["assistant"], "weight": max(weights), "test": {"ndcg@10": 0.05},
                     "grid": [{"assistant_weight": w, "score": 0.01 * w, "valid": {}} for w in weights]}
        return {"best_valid_result": {"ndcg@10": 0.1}, "test_result": test, "assistant": guide,
                "timings": {"data_s": 0.1, "model_load_s": 0.2, "fit_s": 3.0, "test_s": 1.0},
                "trainable_parameters": 460800, "saved_model_file": config_dict.get("saved_for_test", "saved/x"),
                "test_hits": {"users": users, "targets": users, **encoded,
                                  "fingerprint": split_fingerprint(users, users)}}


def _spec_file(tmp_path, runs, seeds=(1, 2, 3), reference="ref"):
    spec = {"dataset": "ml-100k", "seeds": list(seeds), "reference": reference,
            "report_metrics": ["ndcg@10", "hit@10"], "runs": runs}
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture(autouse=True)
def _no_full_gc(monkeypatch):
    """Between real runs the runner collects garbage to free the LLM; a full collection inside
    pytest's large heap costs seconds per fake run and is not what these tests check."""
    monkeypatch.setattr(runner, "free_memory", lambda: None)


def _run(name, **config):
    return {"name": name, "model": "LLMMSL", "config": {"name_for_test": name, **config}}


RUNS = [_run("strong", hit_rate=0.6), _run("ref", hit_rate=0.2), _run("same", hit_rate=0.2),
        _run("broken", fail=True, hit_rate=0.2), _run("oom", oom=True, hit_rate=0.2)]


def test_report_table_csv_json_and_chart(tmp_path, monkeypatch):
    import matplotlib.image

    fake = FakeRuns()
    monkeypatch.setattr("recbole_msl.quick_start.run", fake)
    report = runner.run_comparison(load_spec(_spec_file(tmp_path, RUNS)), results_dir=str(tmp_path / "res"),
                                   echo=lambda *_: None)
    assert len(fake.calls) == 15  # every run and seed was attempted, failures included
    files = report["files"]
    with open(files["markdown"]) as f:
        markdown = f.read()
    rows = {}
    for line in markdown.splitlines():  # the first table; the gains table repeats run names
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].strip("| "), line)
    assert "± " in rows["strong"] and "reference" in rows["ref"]
    assert ", significant; detectable at 80% power: 0." in rows["strong"]  # 0.6 vs 0.2 hit rate, 400 users
    assert "not significant; detectable at 80% power: 0." in rows["same"]  # "not significant" comes with its power
    assert "p<0.001, Holm p<0.001, significant" in rows["strong"] and "±" not in rows["strong"].split(" | ")[4]  # "±" is only the seeds' spread
    assert "Holm p: p adjusted over all 4 paired tests in this report" in markdown  # 2 runs x 2 metrics
    assert "failed (seeds 1, 2, 3): lora_r must be a positive integer, not -1" in rows["broken"]
    assert "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in rows["oom"]
    assert "more detail" not in markdown  # one-line errors
    with open(files["csv"]) as f:
        records = list(csv.DictReader(f))
    assert len(records) == 15 and {r["status"] for r in records} == {"ok", "failed"}
    assert {"test_ndcg@10", "train_s", "eval_s", "trainable_parameters", "peak_rss_mb", "config"} <= set(records[0])
    data = _read_json(files["json"])
    strong = next(r for r in data["runs"] if r["name"] == "strong")
    assert strong["seeds_ok"] == [1, 2, 3] and len(strong["test"]["ndcg@10"]["values"]) == 3
    gain = strong["gains"]["hit@10"]
    assert gain["significant"] and gain["t_test_p"] < 1e-6 and gain["n_users"] == N_USERS
    assert gain["p"] < 0.001 and gain["p"] <= gain["p_holm"] <= 4 * gain["p"] and data["multiple_testing"]["family_size"] == 4
    assert abs(gain["relative_gain"] - (gain["mean_run"] / gain["mean_reference"] - 1)) < 1e-12
    assert data["same_test_rows"]
    image = matplotlib.image.imread(files["chart"])
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05  # not a blank canvas



def test_chart_title_counts_the_seeds_each_run_finished():
    from recbole_msl.compare.chart import seed_note

    assert seed_note([2020, 2021, 2022], [3, 3]) == "mean ± sample std over 3 seeds"
    # a partial report (LLM runs at 2 of 3 seeds) or a one-seed variant is not labelled "over 3 seeds"
    assert seed_note([2020, 2021, 2022], [2, 3, 1]) == "mean ± sample std over each run's seeds (1 to 3; one seed: no error bar)"
    assert seed_note([2020, 2021, 2022], [2, 3]) == "mean ± sample std over each run's seeds (2 to 3)"
    assert seed_note([2020], [1]) == "seed 2020"
    assert seed_note([1, 2], [1, 1]) == "one seed per run"


def test_a_split_that_tests_a_user_twice_is_reported_in_rows_not_users():
    from recbole_msl.compare.report import build_report
    from recbole_msl.compare.report_format import tested_rows, to_markdown

    spec = spec_from_models("SASRec,GRU4Rec", "ml-100k", [], [1], None)
    record = {"run": "SASRec", "seed": 1, "status": "ok", "test": {"ndcg@10": 0.1}, "valid": {},
              "test_hits": {"users": ["7", "7", "8", "9"], **encode_hits(np.tile([0] * 10 + [1], (4, 1)))}}
    report = build_report(spec, [record])
    assert tested_rows(report) == ("4 test rows (3 users)", "rows")
    assert "on 4 test rows (3 users)" in to_markdown(report)
    record["test_hits"] = {"users": ["7", "8", "9"], **encode_hits(np.tile([0] * 10 + [1], (3, 1)))}
    assert tested_rows(build_report(spec, [record])) == ("3 test users", "users")

def test_resume_reads_finished_runs_back_and_redoes_failed_or_changed_ones(tmp_path, monkeypatch):
    results = str(tmp_path / "res")
    path = _spec_file(tmp_path, RUNS[:3], seeds=(1, 2))
    interrupted = FakeRuns(interrupt_after=4)
    monkeypatch.setattr("recbole_msl.quick_start.run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_comparison(load_spec(path), results_dir=results, echo=lambda *_: None)
    assert len(os.listdir(os.path.join(results, "cmp", "runs"))) == 4  # complete records only

    resumed = FakeRuns()
    monkeypatch.setattr("recbole_msl.quick_start.run", resumed)
    report = runner.run_comparison(load_spec(path), results_dir=results, echo=lambda *_: None)
    assert resumed.calls == [("ref", 2), ("same", 2)]
    assert all(r["seeds_ok"] == [1, 2] for r in report["runs"])

    changed = [RUNS[0], _run("ref", hit_rate=0.25), RUNS[2], RUNS[3]]
    again = FakeRuns()
    monkeypatch.setattr("recbole_msl.quick_start.run", again)
    runner.run_comparison(load_spec(_spec_file(tmp_path, changed, seeds=(1, 2))), results_dir=results,
                          echo=lambda *_: None)
    assert again.calls == [("ref", 1), ("broken", 1), ("ref", 2), ("broken", 2)]
    retry = FakeRuns()
    monkeypatch.setattr("recbole_msl.quick_start.run", retry)
    runner.run_comparison(load_spec(_spec_file(tmp_path, changed, seeds=(1, 2))), results_dir=results,
                          echo=lambda *_: None)
    assert retry.calls == [("broken", 1), ("broken", 2)]  # a failed run is tried again; finished ones are not


def test_adopt_reads_a_published_comparisons_equal_runs_instead_of_running_them(tmp_path, monkeypatch):
    """``adopt: [old]``: a run with the same settings as one committed under docs/results/old/runs/ (whatever it was
    called there) takes that record, renamed and marked; a run with other settings runs; a missing name is refused
    when the file is read."""
    published = tmp_path / "published"
    monkeypatch.setattr(store, "PUBLISHED_RESULTS", str(published))
    monkeypatch.setattr("recbole_msl.compare.spec.PUBLISHED_RESULTS", str(published))
    monkeypatch.setattr("recbole_msl.quick_start.run", FakeRuns())
    (tmp_path / "old").mkdir()
    old = _spec_file(tmp_path / "old", [RUNS[0], RUNS[1]], seeds=(1, 2))
    runner.run_comparison(load_spec(old), results_dir=str(tmp_path / "res"), echo=lambda *_: None)
    os.makedirs(published / "old")
    os.rename(tmp_path / "res" / "cmp" / "runs", published / "old" / "runs")
    (published / "old" / "runs" / "strong--seed2.json").unlink()  # one seed was never published

    renamed = {**RUNS[0], "name": "strong-again"}
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump({"dataset": "ml-100k", "seeds": [1, 2], "reference": "strong-again",
                                    "adopt": ["old"], "runs": [renamed, _run("new", hit_rate=0.3)]}))
    fresh, lines = FakeRuns(), []
    monkeypatch.setattr("recbole_msl.quick_start.run", fresh)
    report = runner.run_comparison(load_spec(str(path)), results_dir=str(tmp_path / "res"), echo=lines.append)
    assert fresh.calls == [("new", 1), ("strong", 2), ("new", 2)]  # seed 1's strong is read, seed 2's runs
    taken = _read_json(tmp_path / "res" / "new" / "runs" / "strong-again--seed1.json")
    assert taken["run"] == "strong-again" and taken["adopted_from"] == {"comparison": "old", "run": "strong"}
    assert taken["test"] == _read_json(published / "old" / "runs" / "strong--seed1.json")["test"]
    assert "[1/4] strong-again seed 1: the same run as strong of old (docs/results/): its record is taken" in lines[0]
    with open(report["files"]["markdown"]) as f:
        assert "the records of strong of old" in f.read()

    path.write_text(yaml.safe_dump({"dataset": "ml-100k", "adopt": ["missing"], "runs": [renamed]}))
    with pytest.raises(ConfigError, match="adopt names missing, which has no records in docs/results/missing/runs/"):
        load_spec(str(path))


def test_report_only_shows_the_finished_runs_and_names_the_rest(tmp_path, monkeypatch):
    """While a comparison is under way, --report_only runs nothing, reports the finished runs (one seed:
    no ± shown) and lists every other (run, seed), including one whose settings changed since."""
    results = str(tmp_path / "res")
    path = _spec_file(tmp_path, RUNS[:3], seeds=(1, 2))
    monkeypatch.setattr("recbole_msl.quick_start.run", FakeRuns(interrupt_after=3))
    with pytest.raises(KeyboardInterrupt):
        runner.run_comparison(load_spec(path), results_dir=results, echo=lambda *_: None)
    nothing = FakeRuns(interrupt_after=0)  # any call would raise
    monkeypatch.setattr("recbole_msl.quick_start.run", nothing)
    (tmp_path / "changed").mkdir()  # the same comparison name, "cmp", with ref's settings changed
    changed = _spec_file(tmp_path / "changed", [RUNS[0], _run("ref", hit_rate=0.25), RUNS[2]], seeds=(1, 2))
    report = runner.run_comparison(load_spec(changed), results_dir=results, echo=lambda *_: None, report_only=True)
    assert not nothing.calls
    assert report["pending"] == [{"run": "ref", "seed": 1}, {"run": "strong", "seed": 2}, {"run": "ref", "seed": 2},
                                 {"run": "same", "seed": 2}]
    with open(report["files"]["markdown"]) as f:
        markdown = f.read()
    assert "**Partial report: 2 of 6 runs have finished**" in markdown
    rows = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines() if line.startswith("| ")}
    assert rows["strong"].endswith("| not finished yet (seed 2) |") and rows["ref"].endswith("| not finished yet (seeds 1, 2) |")
    assert "±" not in rows["strong"].split(" | ")[2]  # one seed finished: a value, no spread
    assert not any(run["gains"] for run in report["runs"])  # the reference has not run: nothing to pair with
    full = runner.run_comparison(load_spec(path), results_dir=results, echo=lambda *_: None, report_only=True)
    assert [p["run"] for p in full["pending"]] == ["strong", "ref", "same"]  # the unchanged ref seed 1 counts
    assert full["runs"][0]["gains"]["hit@10"]["seeds"] == [1]


def test_paired_test_against_scipy_and_edge_cases():
    from scipy import stats

    rng = np.random.default_rng(0)
    reference = rng.random(300)
    same = paired_test(reference, reference.copy(), "ndcg@10")
    assert same.p == 1.0 and same.relative_gain == 0.0 and not same.significant
    shifted = reference + 0.05 + 0.01 * rng.standard_normal(300)
    better = paired_test(shifted, reference, "ndcg@10")
    assert better.significant and better.ci_low > 0 and better.t_test_p < 1e-10
    noisy = reference + 0.3 * rng.standard_normal(300)
    result = paired_test(noisy, reference, "ndcg@10")
    assert abs(result.t_test_p - stats.ttest_rel(noisy, reference).pvalue) < 1e-12
    assert abs(result.p - result.t_test_p) < 0.1  # both tests agree on well-behaved data
    zero = paired_test(np.array([0.0, 1.0]), np.zeros(2), "hit@10")
    assert zero.relative_gain != zero.relative_gain  # nan: no relative gain over a zero reference


def test_per_user_metrics_average_to_recbole_figures():
    from recbole.evaluator.collector import DataStruct
    from recbole.evaluator.register import metrics_dict

    rng = np.random.default_rng(3)
    matrix = np.zeros((250, 11), dtype=np.int64)
    matrix[:, :10] = rng.random((250, 10)) < 0.15
    matrix[:, -1] = rng.integers(1, 4, size=250)  # several positives per row, as in non-sequential data
    struct = DataStruct()
    struct.set("rec.topk", torch.from_numpy(matrix))
    config = {"topk": [5, 10], "metric_decimal_place": 10}
    per_user = per_user_metrics(encode_hits(matrix), ["recall", "ndcg", "hit", "mrr", "precision", "map"], [5, 10])
    for name in ["recall", "ndcg", "hit", "mrr", "precision", "map"]:
        expected = metrics_dict[name](config).calculate_metric(struct)
        for key, value in expected.items():
            assert abs(per_user[key].mean() - value) < 1e-9, key


@pytest.mark.parametrize("runs, reference, message", [
    ([_run("a"), _run("a")], None, "two runs are named 'a'"),
    ([_run("a"), _run("b")], "c", "reference run 'c' is not among the runs"),
    ([_run("a b")], None, "may hold only letters"),
    ([{"name": "a", "model": "X", "overrides": {}}], None, "unknown key 'overrides'"),
    ([{"name": "a"}], None, "needs at least 'model'"),
])
def test_bad_comparison_files_give_one_line_errors(tmp_path, runs, reference, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(_spec_file(tmp_path, runs, reference=reference))


@pytest.mark.parametrize("curve, expected", [
    ([1024, 0, 256, 256], [0, 256, 1024]), ([0], None), ([-256, 256], None), ([True, 256], None), ("256", None),
])
def test_curve_points_are_sequence_counts_with_zero_for_the_untrained_model(tmp_path, curve, expected):
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump({"dataset": "ml-100k", "curve": curve, "runs": [_run("a")]}))
    if expected is None:
        with pytest.raises(ConfigError, match=r"curve must be a list of sequence counts .* e\.g\. \[0, 256"):
            load_spec(str(path))
    else:
        assert load_spec(str(path)).curve == expected


def test_bad_comparison_arguments(tmp_path, capsys):
    with pytest.raises(ConfigError, match="distinct integers"):
        parse_seeds("1,1")
    with pytest.raises(ConfigError, match="must be integers"):
        parse_seeds("one,two")
    with pytest.raises(ConfigError, match="at least two models"):
        spec_from_models("SASRec", "ml-100k")
    assert main(["--comparison=no-such-comparison"]) == 2
    assert "shipped comparison; use a YAML path or one of: " in capsys.readouterr().err
    assert main(["train", "--report_only"]) == 2
    assert "--report_only is for comparisons; use `recbole-msl compare`" in capsys.readouterr().err


def test_shipped_comparisons_parse():
    from recbole_msl.recbole_seam.config import PROPERTIES_DIR, read_config_file

    folder = os.path.join(PROPERTIES_DIR, "comparisons")
    names = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))
    assert {"ml-100k-cpu", "ml-1m-cpu", "amazon-books-cpu", "amazon-books-gpu"} <= set(names)
    for name in names:
        spec = load_spec(name)
        if spec.curve:  # a learning curve or a settings search: validation only, no paired test
            assert "LLMMSL" in {r.model for r in spec.runs}
            for run in spec.runs:  # every point ends an epoch of every LLM run (config over its files)
                if run.model == "LLMMSL":
                    settings = {}
                    for path in run.config_files:
                        settings.update(read_config_file(path))
                    per_epoch = {**settings, **run.config}["train_samples_per_epoch"]
                    trained = [trained_sequences(p, run.cost) for p in spec.curve]
                    assert all(t % per_epoch == 0 for t in trained), (name, run.name, per_epoch)
            continue
        assert spec.reference in spec.run_names()
        assert {"LLMMSL", "SASRec"} <= {r.model for r in spec.runs} or name.endswith("-tau")
        if spec.curve_adapters:  # each sequence row trains exactly what a curve run trained (else it would train)
            for run in (r for r in spec.runs if r.name.endswith("-sequence")):
                found = [other.name for _, other in same_training_runs(run, spec.seeds[0], spec.dataset, [],
                                                                        spec.curve_adapters)]
                assert found[0] == run.name.removesuffix("-sequence"), (name, run.name, found)


def test_real_small_comparison(tmp_path, tiny_run_config, capsys):
    """Two LLMMSL objectives and GRU4Rec, really trained and tested, through the command line."""
    shared = {k: v for k, v in tiny_run_config.items() if k != "llm_path"}
    spec = {"name": "small", "dataset": "ml-100k", "seeds": [7], "reference": "lml",
            "config": {**shared, "MAX_ITEM_LIST_LENGTH": 10},
            "runs": [{"name": "msl", "model": "LLMMSL", "config": {"llm_path": tiny_run_config["llm_path"]}},
                     {"name": "lml", "model": "LLMMSL",
                      "config": {"llm_path": tiny_run_config["llm_path"], "llm_loss": "lml"}},
                     {"name": "gru", "model": "GRU4Rec",
                      "config": {"embedding_size": 16, "hidden_size": 16, "train_batch_size": 1024}}]}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main([f"--comparison={path}", f"--results_dir={tmp_path / 'res'}"]) == 0
    printed = capsys.readouterr().out
    assert "| msl | LLMMSL |" in printed and "| gru | GRU4Rec |" in printed
    folder = tmp_path / "res" / "small"
    data = _read_json(folder / "small.json")
    assert data["same_test_rows"] and all(r["seeds_ok"] == [7] for r in data["runs"])
    for name in ("msl", "lml", "gru"):
        record = _read_json(folder / "runs" / f"{name}--seed7.json")
        values = per_user_metrics(record["test_hits"], ["ndcg", "hit"], [5, 10])
        assert len(record["test_hits"]["users"]) == tiny_run_config["eval_max_users"]
        for key, value in values.items():  # per-user values average to RecBole's reported figure
            assert abs(value.mean() - record["test"][key]) < 1e-4
        assert record["trainable_parameters"] > 0 and record["peak_rss_mb"] > 0
    msl = _read_json(folder / "runs" / "msl--seed7.json")
    assert msl["trainable_parameters"] < 10_000  # LoRA only: the tiny backbone stays frozen
    assert os.path.getsize(folder / "small.png") > 10_000
    assert main([f"--comparison={path}", f"--results_dir={tmp_path / 'res'}"]) == 0  # resumes: nothing to train
    assert capsys.readouterr().out.count("finished earlier, read back") == 3


def test_minimal_detectable_difference_has_80_percent_power():
    """A true mean difference equal to the reported figure is found (p < 0.05) in about 80% of repeats."""
    from scipy import stats as scipy_stats

    from recbole_msl.compare.stats import minimal_detectable_difference

    rng = np.random.default_rng(0)
    n, sd = 300, 0.2
    mde = minimal_detectable_difference(rng.normal(0.0, sd, n))
    assert mde == pytest.approx(2.8 * sd / np.sqrt(n), rel=0.1)
    found = [scipy_stats.ttest_1samp(rng.normal(mde, sd, n), 0.0).pvalue < 0.05 for _ in range(2000)]
    assert 0.76 < np.mean(found) < 0.84
    test = paired_test(np.full(n, 0.1) + rng.normal(0, sd, n), np.full(n, 0.1), "ndcg@10")
    assert test.detectable_relative == pytest.approx(test.detectable / 0.1)


def test_an_interrupted_llm_run_continues_after_its_last_epoch_with_the_same_result(
        tmp_path, tiny_run_config, capsys, monkeypatch):
    """Ctrl-C in the second epoch of a comparison's LLMMSL run: the command says to run it again, the rerun
    continues from the first epoch's resume folder (not from scratch), adds up both attempts' time and
    ends where an uninterrupted run ends."""
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    train_epoch, epochs_trained = LLMMSLTrainer._train_epoch, []

    def counted(self, train_data, epoch_idx, *args, **kwargs):
        epochs_trained.append(epoch_idx)
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    def interrupted_in_second_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return counted(self, train_data, epoch_idx, *args, **kwargs)

    config = {**{k: v for k, v in tiny_run_config.items() if k != "eval_max_users"}, "epochs": 2,
              "train_samples_per_epoch": 8, "eval_sample_users": 5, "show_examples": 0}
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({"dataset": "ml-100k", "seeds": [2020],
                                    "runs": [{"name": "msl", "model": "LLMMSL", "config": config}]}))
    args = ["compare", f"--comparison={path}"]
    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", interrupted_in_second_epoch)
    assert main(args + [f"--results_dir={tmp_path / 'res'}"]) == 130
    assert "interrupted; run the same command again to continue" in capsys.readouterr().err
    (first,) = glob.glob(str(tmp_path / "saved" / "msl--seed2020--*" / "spent.json"))
    first_attempt = _read_json(first)
    assert first_attempt["attempts"] == 1 and first_attempt["cpu_s"] > 0
    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", counted)
    assert main(args + [f"--results_dir={tmp_path / 'res'}"]) == 0
    assert epochs_trained == [0, 1]  # epoch 0 in the first attempt, only epoch 1 in the second
    resumed = _read_json(tmp_path / "res" / "cmp" / "runs" / "msl--seed2020.json")
    assert resumed["resumed_from"].endswith("-last") and resumed["attempts"] == 2
    # both attempts counted, less what the first did after its resume folder (redone by the second)
    assert 0 <= resumed["lost_cpu_s"] < first_attempt["cpu_s"] < resumed["cpu_s"] + resumed["lost_cpu_s"]
    assert not os.path.exists(first) and not os.path.exists(resumed["resumed_from"])  # a finished run forgets them
    assert main(args + [f"--results_dir={tmp_path / 'whole'}"]) == 0  # uninterrupted, same seed, afresh
    whole = _read_json(tmp_path / "whole" / "cmp" / "runs" / "msl--seed2020.json")
    assert "resumed_from" not in whole and whole["attempts"] == 1
    assert resumed["test"] == whole["test"] and resumed["valid"] == whole["valid"]
    assert resumed["test_hits"]["hits"] == whole["test_hits"]["hits"]


def test_time_a_cut_attempt_spent_after_its_resume_folder_is_counted_as_lost(tmp_path):
    """The ledger says 100 CPU-s / 50 wall-s; the resume folder was written 10 s before the ledger's last
    write: 10 wall-s and 20 CPU-s were redone, the rest is the run's. Starting afresh loses all of it."""
    from recbole_msl.compare.spent import LEDGER_FILE, SpentTime

    ledger, resume = tmp_path / LEDGER_FILE, tmp_path / "x-last"
    ledger.write_text(json.dumps({"cpu_s": 100.0, "wall_s": 50.0, "attempts": 1, "lost_cpu_s": 3.0, "lost_wall_s": 1.5}))
    resume.mkdir()
    os.utime(resume, (1_000_000, 1_000_000))
    os.utime(ledger, (1_000_010, 1_000_010))
    spent = SpentTime(str(tmp_path), str(resume))
    assert (spent.prior_cpu, spent.prior_wall) == pytest.approx((80.0, 40.0))
    assert (spent.lost_cpu_s, spent.lost_wall_s) == pytest.approx((23.0, 11.5)) and spent.attempts == 2
    afresh = SpentTime(str(tmp_path), None)
    assert (afresh.prior_cpu, afresh.prior_wall, afresh.lost_cpu_s, afresh.lost_wall_s) == pytest.approx((0, 0, 103, 51.5))
    assert SpentTime(str(tmp_path / "none"), None).lost_cpu_s == 0.0  # no ledger: nothing lost
    with SpentTime(str(tmp_path), str(resume), period=3600) as spent:
        pass
    written = json.loads(ledger.read_text())
    assert written["attempts"] == 2 and written["lost_cpu_s"] == pytest.approx(23.0) and written["cpu_s"] >= 80.0


def test_learning_curve_evaluates_at_each_point_and_resumes(tmp_path, tiny_run_config, capsys, monkeypatch):
    """A curve file: LLMMSL is validated after 8 and 16 sequences in one run; GRU4Rec gives a line; a rerun
    reads everything back; the standard error is the per-user one. Adding 0 (untrained) later measures
    only that point, and a curve with 0 from the start trains exactly as one without it."""
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    train_epoch, epochs_trained = LLMMSLTrainer._train_epoch, []

    def counted(self, train_data, epoch_idx, *args, **kwargs):
        epochs_trained.append(epoch_idx)
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(LLMMSLTrainer, "_train_epoch", counted)
    shared = {k: v for k, v in tiny_run_config.items() if k not in ("llm_path", "eval_max_users", "epochs")}
    spec = {"name": "curve", "dataset": "ml-100k", "curve": [8, 16],
            "config": {**shared, "MAX_ITEM_LIST_LENGTH": 10, "train_samples_per_epoch": 8,
                       "eval_sample_users": {"valid": 3}},
            "runs": [{"name": "msl", "model": "LLMMSL", "config": {"llm_path": tiny_run_config["llm_path"]}},
                     {"name": "gru", "model": "GRU4Rec",
                      "config": {"embedding_size": 16, "hidden_size": 16, "train_batch_size": 2048, "epochs": 1}}]}
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'res'}"]) == 0
    printed = capsys.readouterr().out
    assert "| msl | 8 |" in printed and "| msl | 16 |" in printed and "| gru (best valid) |" in printed
    assert "| msl: 16 vs 8 sequences | ndcg@10 |" in printed and "| msl | 16 | 3 |" in printed  # paired test, precision
    folder = tmp_path / "res" / "curve"
    data = _read_json(folder / "curve.json")
    points = data["curves"][0]["points"]
    assert [p["sequences"] for p in points] == [8, 16] and all(p["stats"]["users"] == 3 for p in points)
    record = _read_json(folder / "runs" / "curve-msl--seed2020.json")
    values = per_user_metrics(record["points"][1]["valid_hits"], ["ndcg"], [10])["ndcg@10"]
    assert points[1]["stats"]["ndcg@10"]["se"] == pytest.approx(values.std(ddof=1) / np.sqrt(3))
    assert points[1]["valid"]["ndcg@10"] == pytest.approx(values.mean(), abs=1e-4)  # RecBole's own figure
    assert points[1]["cpu_s"] > points[0]["cpu_s"] > 0
    assert all(0 < p["valid_cpu_s"] < p["cpu_s"] for p in points)  # so training's own CPU time can be told apart
    assert sum(p["valid_cpu_s"] for p in points) < points[1]["cpu_s"]
    assert os.path.getsize(folder / "curve.png") > 10_000
    assert main(["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'res'}"]) == 0
    assert "curve msl seed 2020: finished earlier" in capsys.readouterr().out
    assert epochs_trained == [0, 1]

    path.write_text(yaml.safe_dump({**spec, "curve": [0, 8, 16]}))
    assert main(["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'res'}"]) == 0
    assert "| msl | 0 (untrained) |" in capsys.readouterr().out and epochs_trained == [0, 1]  # no training
    added = _read_json(folder / "runs" / "curve-msl--seed2020.json")
    assert [p["sequences"] for p in added["points"]] == [0, 8, 16] and added["points"][1:] == record["points"]
    assert main(["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'fresh'}"]) == 0
    fresh = _read_json(tmp_path / "fresh" / "curve" / "runs" / "curve-msl--seed2020.json")
    assert fresh["points"][0]["valid_hits"] == added["points"][0]["valid_hits"]  # untrained, before or after
    assert [p["valid_hits"] for p in fresh["points"][1:]] == [p["valid_hits"] for p in record["points"]]
    assert [p["valid"] for p in fresh["points"][1:]] == [p["valid"] for p in record["points"]]


def test_curve_runs_that_differ_only_in_training_keys_share_the_untrained_point(tmp_path, tiny_run_config, capsys):
    """Point 0 is the backbone: LML takes MSL's measurement, which equals LML's own (measured in a
    comparison without MSL); runs with another LoRA shape or full fine-tuning would take it too, and full
    fine-tuning's own measurement equals it; a run whose evaluation differs (a shorter history) measures its own."""
    from recbole_msl.compare.curve import untrained_signature

    shared = {k: v for k, v in tiny_run_config.items() if k not in ("eval_max_users", "epochs")}
    spec = {"name": "zero", "dataset": "ml-100k", "curve": [0, 8],
            "config": {**shared, "MAX_ITEM_LIST_LENGTH": 10, "train_samples_per_epoch": 8,
                       "eval_sample_users": {"valid": 3}},
            "runs": [{"name": "msl", "model": "LLMMSL", "config": {"llm_loss": "msl", "tau": "ats"}},
                     {"name": "lml", "model": "LLMMSL", "config": {"llm_loss": "lml", "learning_rate": 0.01}},
                     {"name": "short", "model": "LLMMSL", "config": {"llm_loss": "lml", "MAX_ITEM_LIST_LENGTH": 5}}]}
    others = [{"name": "wide", "model": "LLMMSL",
               "config": {"lora_r": 4, "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}},
              {"name": "full", "model": "LLMMSL", "config": {"llm_finetune": "full", "learning_rate": 1e-4}}]
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["compare", f"--comparison={path}", f"--results_dir={tmp_path / 'res'}"]) == 0
    printed = capsys.readouterr().out
    assert "curve lml seed 2020: the untrained point is msl's" in printed and "| lml | 0 (untrained), msl's |" in printed
    assert "curve short seed 2020: the untrained point is" not in printed
    runs = tmp_path / "res" / "zero" / "runs"
    msl, lml, short = (_read_json(runs / f"curve-{n}--seed2020.json")["points"][0] for n in ("msl", "lml", "short"))
    assert lml["measured_in"] == "msl" and lml["valid_hits"] == msl["valid_hits"]
    assert "measured_in" not in short and "measured_in" not in msl
    path.write_text(yaml.safe_dump({**spec, "runs": spec["runs"] + others}))
    signatures = {r.name: untrained_signature(r, "ml-100k", 2020, []) for r in load_spec(str(path)).runs}
    assert signatures["wide"] == signatures["full"] == signatures["msl"] != signatures["short"]
    for alone in ("lml", "full"):  # each measured on its own equals msl's (full: no adapter at all)
        path.write_text(yaml.safe_dump({**spec, "runs": [r for r in spec["runs"] + others if r["name"] == alone]}))
        assert main(["compare", f"--comparison={path}", f"--results_dir={tmp_path / alone}"]) == 0
        own = _read_json(tmp_path / alone / "zero" / "runs" / f"curve-{alone}--seed2020.json")["points"][0]
        assert "measured_in" not in own and own["valid_hits"] == msl["valid_hits"] and own["valid"] == msl["valid"]


def _curve_point(sequences: int, rows: list[tuple[str, str, int]]) -> dict:
    """A learning-curve point whose rows are (user, target, rank of the target or 0 for a miss)."""
    hits = {"users": [u for u, _, _ in rows], "targets": [t for _, t, _ in rows],
            "hits": ["".join("1" if r == i + 1 else "0" for i in range(10)) for _, _, r in rows],
            "pos_len": [1] * len(rows)}
    return {"sequences": sequences, "valid_hits": hits}


def test_curve_tests_pair_rows_by_user_and_target_not_by_position():
    """MSL and LML list the same users in different orders: the paired difference is the per-user one;
    different users are reported as unpaired, never paired by position."""
    from recbole_msl.compare.curve import curve_tests

    rows_msl = [("1", "a", 1), ("2", "b", 0), ("3", "c", 3), ("3", "d", 0)]
    rows_lml = [("3", "d", 2), ("3", "c", 0), ("1", "a", 0), ("2", "b", 5)]
    msl = {"run": "msl", "seed": 1, "points": [_curve_point(8, rows_msl), _curve_point(16, rows_msl[:1] + [("2", "b", 1)] + rows_msl[2:])]}
    lml = {"run": "lml", "seed": 1, "points": [_curve_point(8, rows_lml), _curve_point(16, rows_lml[:3])]}
    tests = curve_tests([msl, lml])
    at8 = next(t for t in tests if t["run"] == "lml" and t["sequences"] == 8 and t["metric"] == "hit@10")
    assert at8["against"] == "msl" and at8["users"] == 4 and at8["difference"] == pytest.approx(0.0)
    ndcg8 = next(t for t in tests if t["run"] == "lml" and t["sequences"] == 8 and t["metric"] == "ndcg@10")
    by_hand = [0 - 1, 1 / np.log2(6) - 0, 0 - 1 / np.log2(4), 1 / np.log2(3) - 0]  # users 1, 2, 3c, 3d
    assert ndcg8["difference"] == pytest.approx(np.mean(by_hand))
    assert next(t for t in tests if t["run"] == "lml" and t["sequences"] == 16)["error"] == "different validation users"
    learned = next(t for t in tests if t["kind"] == "last vs first point" and t["run"] == "msl" and t["metric"] == "hit@10")
    assert (learned["sequences"], learned["from_sequences"], learned["difference"]) == (16, 8, pytest.approx(0.25))
    assert curve_tests([lml, msl], reference="msl")[0]["against"] == "msl"


def test_curve_tests_are_one_holm_family_and_a_shared_point_0_is_no_test():
    """LML's point 0 is MSL's measurement: listed as one measurement, outside the family; the other tests
    (two points against the reference, two last-against-first) get Holm p over those 6 and a verdict from it."""
    from recbole_msl.compare.curve import curve_markdown, curve_tests

    rng = np.random.default_rng(0)

    def rows(rate):
        return [(str(u), "t", int(rng.integers(1, 11)) if rng.random() < rate else 0) for u in range(300)]

    zero = _curve_point(0, rows(0.05))
    msl = {"run": "msl", "seed": 2020, "points": [zero, _curve_point(8, rows(0.3))]}
    lml = {"run": "lml", "seed": 2020, "points": [{**zero, "measured_in": "msl"}, _curve_point(8, rows(0.05))]}
    tests = curve_tests([msl, lml], reference="lml")
    shared = [t for t in tests if t.get("same_measurement")]
    family = [t for t in tests if "p" in t]
    assert [(t["sequences"], t["metric"]) for t in shared] == [(0, "ndcg@10"), (0, "hit@10")]
    assert len(family) == 6 and all("p_holm" not in t for t in shared)
    ps = sorted(t["p"] for t in family)
    assert min(t["p_holm"] for t in family) == pytest.approx(min(1.0, 6 * ps[0]))
    assert all(t["p_holm"] >= t["p"] and t["significant"] == (t["p_holm"] < 0.05) for t in family)
    gain = next(t for t in family if t["run"] == "msl" and t["sequences"] == 8 and t["metric"] == "hit@10")
    assert gain["significant"] and gain["t_test_p"] < 0.001 and gain["difference"] > 0.1
    for curve in (msl, lml):
        for point in curve["points"]:
            point.update(stats={"ndcg@10": {"mean": 0.1, "se": 0.01}, "hit@10": {"mean": 0.2, "se": 0.02},
                                "users": 300}, tau=1.0, cpu_s=60.0)
    markdown = curve_markdown({"curves": [msl, lml], "lines": [], "tests": tests})
    assert "Holm p: p adjusted over all 6 tests in this report" in markdown
    assert "ignores the training variance between seeds" in markdown and "± is one standard error" in markdown
    assert "| msl vs lml at 0 | ndcg@10 | 0: one measurement (msl's evaluation), not a test |" in markdown


def test_a_curve_report_is_rebuilt_from_its_records_without_training(tmp_path, monkeypatch):
    """curve_report_only reads the records whose signature matches (a published curve re-tested after
    the statistics change), names a run without one as pending, and trains nothing."""
    from recbole_msl.compare import curve, store
    from recbole_msl.files import write_json

    monkeypatch.setattr(curve, "curve_run", lambda *a, **k: pytest.fail("nothing may train"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": "ml-100k", "seeds": [2020], "curve": [0, 8], "reference": "lml",
                                    "runs": [_run("msl"), _run("lml"), {"name": "sas", "model": "SASRec"}]}))
    spec = load_spec(str(path))
    folder = store.comparison_folder(str(tmp_path / "res"), spec.name)
    rng = np.random.default_rng(0)
    for run in spec.runs[:2]:
        points = []
        for sequences in (0, 8):
            point = _curve_point(sequences, [(str(u), "t", int(rng.integers(0, 11))) for u in range(50)])
            point.update(stats=curve._point_stats(point["valid_hits"]), tau=1.0, cpu_s=1.0)
            points.append(point)
        write_json(store.record_path(folder, f"curve-{run.name}", 2020),
                   {"run": run.name, "model": run.model, "seed": 2020, "points": points,
                    "signature": run.signature(spec.dataset, 2020, ["curve=[8]"])})
    report = curve.curve_report_only(spec, results_dir=str(tmp_path / "res"), echo=lambda *_: None)
    assert report["pending"] == [{"run": "sas", "seed": 2020}]
    assert report["multiple_testing"]["family_size"] == 2 * 2 + 2 * 2  # msl vs lml at 0 and 8, last vs first
    with open(report["files"]["markdown"]) as f:
        assert f.read().startswith("**Partial report: no finished record yet for sas (seed 2020).**")
    os.remove(report["files"]["markdown"])
    assert main(["compare", f"--comparison={path}", "--report_only", f"--results_dir={tmp_path / 'res'}",
                 "--allow_unknown_keys=True"]) == 0  # the test runs carry a key of their own
    assert os.path.exists(report["files"]["markdown"])  # the command line takes the same path


def test_users_for_a_hit_rate_standard_error_of_one_fifth():
    """The smallest n whose binomial standard error is at most a fifth of the rate, checked at n and n - 1."""
    from recbole_msl.compare.curve import users_for_relative_se

    for rate in (0.026, 0.06, 0.3):
        n = users_for_relative_se(rate)
        assert np.sqrt(rate * (1 - rate) / n) <= 0.2 * rate < np.sqrt(rate * (1 - rate) / (n - 1))
    assert users_for_relative_se(0.026) == 937 and users_for_relative_se(0.0) is None


def test_a_run_may_take_only_some_of_the_seeds(tmp_path, monkeypatch):
    """MSL at a fixed tau on one seed beside three-seed runs: run once, paired with the reference on that seed."""
    fake = FakeRuns()
    monkeypatch.setattr("recbole_msl.quick_start.run", fake)
    once = {**_run("once", hit_rate=0.4), "seeds": [2]}
    spec = load_spec(_spec_file(tmp_path, [_run("ref", hit_rate=0.2), once]))
    report = runner.run_comparison(spec, results_dir=str(tmp_path / "res"), echo=lambda *_: None)
    assert sorted(fake.calls) == [("once", 2), ("ref", 1), ("ref", 2), ("ref", 3)]
    row = next(r for r in report["runs"] if r["name"] == "once")
    assert row["seeds_ok"] == [2] and row["gains"]["ndcg@10"]["seeds"] == [2]


def test_listed_pairs_are_tested_in_the_same_holm_family(tmp_path, monkeypatch):
    monkeypatch.setattr("recbole_msl.quick_start.run", FakeRuns())
    path = _spec_file(tmp_path, [_run("strong", hit_rate=0.6), _run("ref", hit_rate=0.2),
                                 _run("same", hit_rate=0.2)], seeds=(1,))
    with open(path) as f:
        raw = yaml.safe_load(f)
    raw["pairs"] = [["strong", "same"]]
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    report = runner.run_comparison(load_spec(path), results_dir=str(tmp_path / "res"), echo=lambda *_: None)
    pair = report["pairs"]["strong vs same"]["hit@10"]
    assert report["multiple_testing"]["family_size"] == 6  # 2 runs x 2 metrics against ref, 1 pair x 2 metrics
    records = {r["run"]: r for r in report["records"]}
    values = {name: per_user_metrics(store.read_record(str(tmp_path / "res" / "cmp"), name, 1)["test_hits"],
                                     ["hit"], [10])["hit@10"] for name in ("strong", "same")}
    direct = paired_test(values["strong"], values["same"], "hit@10", resamples=10000)
    assert pair["p"] == direct.p and pair["difference"] == direct.difference and pair["p_holm"] >= pair["p"]
    with open(report["files"]["markdown"]) as f:
        assert "| strong vs same |" in f.read() and records


@pytest.mark.parametrize("bad", [[["strong", "nobody"]], [["strong", "strong"]], ["strong"]])
def test_bad_pairs_give_one_line_errors(tmp_path, bad):
    path = _spec_file(tmp_path, [_run("strong", hit_rate=0.6), _run("ref", hit_rate=0.2)], seeds=(1,))
    with open(path) as f:
        raw = yaml.safe_load(f)
    raw["pairs"] = bad
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    with pytest.raises(ConfigError, match="pair"):
        load_spec(path)


def test_runs_that_differ_only_in_decoding_share_one_training(tmp_path, monkeypatch):
    """A second run whose settings differ in decoding keys only (an assistant, its weight, num_beams) evaluates the
    first one's adapter; a run without an LLM term (llm_weight 0) neither gives nor takes one."""
    fake = FakeRuns()
    monkeypatch.setattr("recbole_msl.quick_start.run", fake)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    def run(name, **config):  # no name in the config: runs that differ in decoding keys only have equal settings
        return {"name": name, "model": "LLMMSL", "config": {"saved_for_test": str(adapter), **config}}

    runs = [run("ref", hit_rate=0.2), run("alone", hit_rate=0.2, llm_weight=0, assistant="SASRec", assistant_weight=1),
            run("guided", hit_rate=0.2, assistant="SASRec", assistant_weight=[1, 2], num_beams=20),
            run("other", hit_rate=0.3)]  # a training key differs
    report = runner.run_comparison(load_spec(_spec_file(tmp_path, runs, seeds=(1,))),
                                   results_dir=str(tmp_path / "res"), echo=lambda *_: None)
    assert fake.trained_from == [None, None, str(adapter), None]
    records = {r["run"]: r for r in report["records"]}
    assert records["guided"]["training_shared_with"] == "ref" and "training_shared_with" not in records["other"]
    assert records["alone"]["training_signature"] is None
    with open(report["files"]["markdown"]) as f:
        text = f.read()
    assert "| guided | 1 | SASRec | 2 (the grid's largest) | 1: 0.0100, 2: 0.0200 |" in text
    assert "| alone | 1 | SASRec | 1 | 1: 0.0100 |" in text  # a single weight: nothing chosen, nothing flagged


def _hit_record(run: str, seed: int, hit_users: list[int], n_users: int = 6) -> dict:
    """A finished record whose target lands first for ``hit_users`` and nowhere in the top 10 for the others."""
    matrix = np.zeros((n_users, MAXK + 1), dtype=np.int64)
    matrix[hit_users, 0] = 1
    matrix[:, -1] = 1
    encoded = encode_hits(matrix)
    users = [str(u) for u in range(n_users)]
    values = per_user_metrics(encoded, ["ndcg", "hit"], [5, 10])
    return {"run": run, "seed": seed, "status": "ok", "test": {k: float(v.mean()) for k, v in values.items()},
            "valid": {"ndcg@10": 0.1}, "test_hits": {"users": users, "targets": users, **encoded,
                                                      "fingerprint": split_fingerprint(users, users)}}


def test_overlap_table_counts_what_the_guided_search_keeps_of_the_llm_alone_hits(tmp_path):
    """Hits at 10 per user: LLM alone {0, 1, 2}, trie {2, 3, 4}, guided {0, 3, 5}, reference {1, 2}. Against the
    trie, only the LLM had 0 and 1, the guided search keeps 0, loses 2 and 4 of the trie's hits and adds 5."""
    from recbole_msl.compare.report import build_report
    from recbole_msl.compare.report_format import to_markdown

    runs = [{"name": "ref", "model": "SASRec"}, {"name": "llm", "model": "LLMMSL"},
            {"name": "trie", "model": "LLMMSL", "config": {"assistant": "SASRec", "assistant_weight": 1,
                                                            "llm_weight": 0}},
            {"name": "guided", "model": "LLMMSL", "config": {"assistant": "SASRec", "assistant_weight": [1, 2]}}]
    path = _spec_file(tmp_path, runs, seeds=(1,))
    with open(path) as f:
        raw = yaml.safe_load(f)
    raw["pairs"] = [["guided", "llm"], ["guided", "trie"]]
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    records = [_hit_record("ref", 1, [1, 2]), _hit_record("llm", 1, [0, 1, 2]), _hit_record("trie", 1, [2, 3, 4]),
               _hit_record("guided", 1, [0, 3, 5])]
    report = build_report(load_spec(path), records)
    rows = {row["baseline"]: row for row in report["overlap"]["rows"]}
    assert set(rows) == {"trie", "ref"} and report["overlap"]["k"] == 10
    trie, ref = rows["trie"], rows["ref"]
    assert (trie["only_llm"], trie["kept"], trie["baseline_hits"], trie["lost"], trie["new"]) == (2, 1, 3, 2, 1)
    assert (ref["only_llm"], ref["kept"], ref["baseline_hits"], ref["lost"], ref["new"]) == (1, 1, 2, 2, 2)
    for row in rows.values():  # guided - compared = kept + new - lost
        assert row["guided_hits"] - row["baseline_hits"] == row["kept"] + row["new"] - row["lost"]
    assert report["multiple_testing"]["family_size"] == 3 * 2 + 2 * 2  # 3 runs vs ref, 2 pairs, 2 metrics
    assert "guided vs trie" in report["pairs"]
    markdown = to_markdown(report)
    assert "| guided | llm | trie | 1 | 6 | 2 | 1 = 50% (" in markdown
    assert "| guided | llm | ref | 1 | 6 | 1 | 1 = 100% (" in markdown


def test_a_p_at_the_floor_of_its_sign_flips_is_written_as_an_upper_bound():
    from recbole_msl.compare.report_format import fmt_gain, fmt_p

    floor = {"relative_gain": 3.0, "difference": 0.05, "mean_run": 0.066, "mean_reference": 0.016,
             "p": 1 / 10001, "p_holm": 36 / 10001, "flips": 10000, "significant": True, "detectable": 0.016,
             "detectable_relative": 1.0}
    text = fmt_gain(floor)
    assert "p<0.001, Holm p<0.004, significant" in text and "Holm p=" not in text
    exact = {**floor, "p": 0.0002, "p_holm": 0.0036, "flips": 0}  # enumerated: the p is exact, not a bound
    assert "Holm p=0.004" in fmt_gain(exact)
    above = {**floor, "p": 0.02, "p_holm": 0.2}  # random flips, but not at the floor
    assert "p=0.020, Holm p=0.200" in fmt_gain(above)
    assert fmt_p(28 / 10001, at_floor=True) == "<0.003" and fmt_p(0.0021, at_floor=True) == "<0.003"
    assert fmt_p(0.003, at_floor=True) == "<0.003" and fmt_p(0.0028) == "0.003"


def test_records_and_reports_name_no_folder_of_the_machine(tmp_path, monkeypatch):
    """Paths under the working directory (results, checkpoints, logs) and the project's shipped profiles are
    stored relative: a committed record or report holds no absolute path of the machine it ran on."""
    from recbole_msl.recbole_seam.config import PROPERTIES_DIR

    monkeypatch.setattr("recbole_msl.quick_start.run", FakeRuns())
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "saved" / "adapter"
    runs = [{**_run("ref", hit_rate=0.2, saved_for_test=str(saved)), "profiles": ["cpu"]},
            {**_run("other", hit_rate=0.3, saved_for_test=f"moved from {saved}"), "profiles": ["cpu"]}]
    spec = load_spec(_spec_file(tmp_path, runs, seeds=(1,)))
    assert os.path.isabs(spec.source) and os.path.isabs(spec.runs[0].config_files[0])
    report = runner.run_comparison(spec, results_dir="res", echo=lambda *_: None)
    project = os.path.dirname(os.path.abspath(PROPERTIES_DIR))
    written = glob.glob(str(tmp_path / "res" / "**" / "*.*"), recursive=True)
    assert len([p for p in written if p.endswith(".json")]) == 3  # two records and the report
    for path in written:
        if path.endswith((".json", ".csv", ".md")):
            with open(path) as f:
                text = f.read()
            assert str(tmp_path) not in text and project + os.sep not in text, path
    record = store.read_record(str(tmp_path / "res" / "cmp"), "ref", 1)
    assert record["saved_model_file"] == os.path.join("saved", "adapter")
    assert record["config_files"] == [os.path.join("properties", "profiles", "cpu.yaml")]
    assert store.read_record(str(tmp_path / "res" / "cmp"), "other", 1)["saved_model_file"] == \
        f"moved from {os.path.join('saved', 'adapter')}"
    assert report["source"] == "cmp.yaml"
    environment = record["environment"]  # what a reader needs to tell runs that should agree bit for bit
    assert environment["cpu"] and environment["torch_threads"] >= 1 and environment["torch"]
    assert len(environment["code"].split("+")[0]) in (40, len("recbole-msl 0.1.0"))


def test_report_only_of_a_shipped_comparison_works_from_a_fresh_clone(tmp_path, capsys):
    """The getting-started page's `compare --comparison=ml-100k-hybrid --report_only`: with no records of its own,
    the results folder takes the committed ones (docs/results/), and the report holds every finished run."""
    published = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results",
                             "ml-100k-hybrid", "runs")
    records = len([n for n in os.listdir(published) if n.endswith(".json")])
    assert main(["compare", "--comparison=ml-100k-hybrid", "--report_only",
                 f"--results_dir={tmp_path / 'results'}"]) == 0
    out = capsys.readouterr().out
    assert f"read the {records} committed ones from docs/results/ml-100k-hybrid/runs" in out
    assert "not finished yet" not in out and "Partial report" not in out
