"""The report's breakdown by target popularity: buckets at the tertiles of the test targets' training counts, each
run's mean per bucket equal to a direct computation, and the paired tests inside the buckets in the Holm family."""

import json
import os

import numpy as np
import pytest

from recbole_msl.compare.popularity import bucket_of, training_target_counts
from recbole_msl.compare.report import build_report
from recbole_msl.compare.report_format import to_markdown
from recbole_msl.compare.spec import load_spec, spec_from_models
from recbole_msl.compare.stats import holm, paired_test
from recbole_msl.evaluation.records import encode_hits, split_fingerprint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(run, ranks, users, targets):
    """A finished record whose row i hit its target at rank ranks[i] (1-based; 0: no hit in the top 10)."""
    matrix = np.zeros((len(ranks), 11), dtype=np.int64)
    for row, rank in enumerate(ranks):
        if rank:
            matrix[row, rank - 1] = 1
    matrix[:, -1] = 1
    return {"run": run, "seed": 1, "status": "ok", "test": {"ndcg@10": 0.0}, "valid": {}, "valid_metric": "ndcg@10",
            "test_hits": {"users": users, "targets": targets, **encode_hits(matrix),
                          "fingerprint": split_fingerprint(users, targets)}}


def test_buckets_split_at_the_tertiles_and_ties_stay_below():
    assigned, edges = bucket_of(np.array([0, 1, 1, 5, 6, 7, 50, 60, 70]))
    assert assigned.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and edges == [pytest.approx(11 / 3), pytest.approx(64 / 3)]  # numpy's linear quantiles
    assert bucket_of(np.array([1, 1, 1, 1, 9]))[0].tolist() == [0, 0, 0, 0, 2]


def test_each_bucket_holds_the_direct_means_and_its_tests_join_the_holm_family():
    rng = np.random.default_rng(0)
    users = [str(u) for u in range(60)]
    targets = [f"i{u}" for u in range(60)]
    counts = {t: int(c) for t, c in zip(targets, rng.integers(0, 100, 60))}
    ranks = {"llm": rng.integers(0, 11, 60), "sasrec": rng.integers(0, 11, 60)}
    spec = spec_from_models("LLMMSL,SASRec", "ml-100k", [], [1], None)
    spec.runs[0].name, spec.runs[1].name, spec.reference = "llm", "sasrec", "sasrec"
    records = [_record(name, list(r), users, targets) for name, r in ranks.items()]
    report = build_report(spec, records, target_counts=counts)
    popularity = report["popularity"]
    assert [b["bucket"] for b in popularity["buckets"]] == ["tail", "torso", "head"]
    assert sum(b["rows"] for b in popularity["buckets"]) == 60
    ndcg = {name: np.where(r > 0, 1 / np.log2(np.maximum(r, 1) + 1), 0.0) for name, r in ranks.items()}
    assigned, _ = bucket_of(np.array([counts[t] for t in targets]))
    raw = [report["runs"][0]["gains"]["ndcg@10"]["p"]]
    for index, bucket in enumerate(popularity["buckets"]):
        mask = assigned == index
        assert bucket["runs"]["llm"]["mean"] == pytest.approx(ndcg["llm"][mask].mean(), abs=1e-4)
        direct = paired_test(ndcg["llm"][mask], ndcg["sasrec"][mask], "ndcg@10", resamples=1000)
        test = bucket["tests"]["llm vs sasrec"]
        assert test["p"] == pytest.approx(direct.p, abs=1e-9) and test["difference"] == pytest.approx(
            direct.difference, abs=1e-4)
        raw.append(test["p"])
    # the family: llm vs sasrec on each reported metric, then the three bucket tests
    family = [g["p"] for g in report["runs"][0]["gains"].values()] + raw[1:]
    assert report["multiple_testing"]["family_size"] == len(family)
    adjusted = holm(family)
    for index, bucket in enumerate(popularity["buckets"]):
        assert bucket["tests"]["llm vs sasrec"]["p_holm"] == pytest.approx(adjusted[len(family) - 3 + index])
    text = to_markdown(report)
    assert "By target popularity" in text and "| tail | " in text


@pytest.mark.slow
def test_the_published_hybrid_report_gains_the_breakdown():
    """ml-100k's split counted here (RecBole's leave-one-out on the packaged file) and the committed records."""
    spec = load_spec("ml-100k-hybrid")
    counts = training_target_counts(spec)
    assert sum(counts.values()) == 97171  # the training targets of ml-100k's windows
    folder = os.path.join(ROOT, "docs", "results", "ml-100k-hybrid", "runs")
    records = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            records.append(json.load(f))
    report = build_report(spec, records, target_counts=counts)
    buckets = report["popularity"]["buckets"]
    assert sum(b["rows"] for b in buckets) == 943 and all(b["tests"] for b in buckets)
