"""Where the hits are: a comparison's test rows split by how often their target was a training target (tail,
torso and head: the tertiles of the test targets' training counts), with each bucket's metric per run and the
report's paired tests inside each bucket (in the report's Holm family). Titles are the LLM's advantage where a
sequential model has seen an item a few times only; this table shows whether that holds."""

from __future__ import annotations

import collections

import numpy as np

from ..recbole_seam.build import build_data
from ..recbole_seam.config import Config

BUCKETS = ("tail", "torso", "head")


def training_target_counts(spec, cmd_args=()) -> dict[str, int]:
    """Item token -> how many training rows have it as their target, on the split of the comparison's first run
    (every run of a comparison shares the data settings; the report checks they were tested on the same rows)."""
    run = spec.runs[0]
    config = Config(model=run.model, dataset=spec.dataset, config_file_list=run.config_files,
                    config_dict={**run.config, "seed": spec.seeds[0]}, cmd_args=list(cmd_args))
    _, (train, _, _) = build_data(config)
    data = train._dataset
    tokens = data.field2id_token[data.iid_field]
    counted = collections.Counter(data.inter_feat[data.iid_field].tolist())
    return {str(tokens[i]): n for i, n in counted.items()}


def bucket_of(counts: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Each row's bucket (0 tail, 1 torso, 2 head) and the two edges: tail <= the first tertile < torso <= the
    second < head, over the rows' training counts (ties at an edge stay in the lower bucket)."""
    edges = [float(q) for q in np.quantile(counts, [1 / 3, 2 / 3])]
    return np.where(counts <= edges[0], 0, np.where(counts <= edges[1], 1, 2)), edges


def breakdown(targets: list[str], counts: dict[str, int], values: dict[str, np.ndarray], test, comparisons,
              metric: str) -> dict:
    """Per bucket: its rows and range of training counts, each run's mean ``metric`` ± its standard error over the
    bucket's rows (``values``: run -> per-row values, averaged over the run's seeds), and ``test(name, other,
    mask)`` for each (name, other) of ``comparisons`` (the paired test on the bucket's rows, or None)."""
    row_counts = np.array([counts.get(str(t), 0) for t in targets], dtype=np.int64)
    assigned, edges = bucket_of(row_counts)
    buckets = []
    for index, name in enumerate(BUCKETS):
        mask = assigned == index
        if not mask.any():
            continue
        chosen = row_counts[mask]
        runs = {}
        for run, vector in values.items():
            part = vector[mask]
            se = float(part.std(ddof=1) / np.sqrt(part.size)) if part.size > 1 else float("nan")
            runs[run] = {"mean": float(part.mean()), "se": se}
        tests = {}
        for first, second in comparisons:
            result = test(first, second, mask)
            if result is not None:
                tests[f"{first} vs {second}"] = result
        buckets.append({"bucket": name, "rows": int(mask.sum()), "min_count": int(chosen.min()),
                        "max_count": int(chosen.max()), "runs": runs, "tests": tests})
    return {"metric": metric, "edges": edges, "buckets": buckets}
