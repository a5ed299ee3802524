"""``python -m benchmarks.sequence_augmentation``: RecBole's sequence augmentation against the array version.

Every sequential run (LLMMSL, SASRec, GRU4Rec) turns each user's interactions into (history, next item) rows
when its data set is built. RecBole 1.2.1 copies the histories row by row in Python;
:mod:`recbole_msl.recbole_seam.sequence_augmentation` builds the same tensors with array operations. This times
both on ml-100k (bundled with RecBole) at two history lengths, interleaved so that load on a shared machine hits
both alike, and checks that they give equal tensors.
"""

from __future__ import annotations

import statistics
import time

import torch
from recbole.data.dataset.dataset import Dataset

from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset
from recbole_msl.recbole_seam.sequence_augmentation import data_augmentation, recbole_data_augmentation

from .common import machine


def _augment(config, augmentation):
    """(seconds, inter_feat) of one augmentation of a freshly loaded copy of the data set."""
    dataset = create_dataset(config)
    Dataset._change_feat_format(dataset)
    start = time.perf_counter()
    augmentation(dataset)
    return time.perf_counter() - start, dataset.inter_feat


def main(rounds: int = 3) -> None:
    torch.set_num_threads(1)
    print(f"ml-100k, one thread, {rounds} interleaved rounds (median); CPU: {machine()['cpu']}")
    print("MAX_ITEM_LIST_LENGTH  rows      RecBole's loop  array version  ratio  equal tensors")
    for max_len in (10, 50):
        config = Config(model="SASRec", dataset="ml-100k", config_dict={"MAX_ITEM_LIST_LENGTH": max_len})
        seconds = {"recbole": [], "array": []}
        for _ in range(rounds):
            took, want = _augment(config, recbole_data_augmentation)
            seconds["recbole"].append(took)
            took, got = _augment(config, data_augmentation)
            seconds["array"].append(took)
        equal = all(torch.equal(got[f], want[f]) and got[f].dtype == want[f].dtype for f in want.columns)
        loop, array = statistics.median(seconds["recbole"]), statistics.median(seconds["array"])
        print(f"{max_len:<20}  {len(want):<8}  {loop:12.3f} s  {array:11.3f} s  {loop / array:5.0f}x  "
              f"{'yes' if equal else 'NO'}")
        if not equal:
            raise SystemExit("the array version differs from RecBole's loop")


if __name__ == "__main__":
    main()
