"""A checkpoint is bound to the items and titles it was trained with, not to the order of the files' rows."""

import os
import random
import shutil

import pytest

from recbole_msl import Recommender
from recbole_msl.errors import DataMismatchError
from recbole_msl.recbole_seam.config import Config


def _copy_ml_100k(folder) -> str:
    source = Config(model="SASRec", dataset="ml-100k")["data_path"]
    target = os.path.join(folder, "ml-100k")
    shutil.copytree(source, target)
    return target


def _shuffle_rows(path, seed=0):
    with open(path, encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    random.Random(seed).shuffle(rows)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([header, *rows]) + "\n")


def test_the_same_interactions_in_another_row_order_are_the_same_data(tiny_checkpoint, tmp_path):
    result, _ = tiny_checkpoint
    folder = result["saved_model_file"]
    copy = _copy_ml_100k(tmp_path)
    _shuffle_rows(os.path.join(copy, "ml-100k.inter"))  # RecBole's item ids follow the rows: they change
    _shuffle_rows(os.path.join(copy, "ml-100k.item"))
    moved = Recommender(folder, {"data_path": str(tmp_path)})
    assert moved.dataset.field2id_token["item_id"].tolist() != \
        Recommender(folder).dataset.field2id_token["item_id"].tolist()
    assert moved.recommend(["1", "50", "181"], topk=5) == Recommender(folder).recommend(["1", "50", "181"], topk=5)


def test_another_title_is_other_data(tiny_checkpoint, tmp_path):
    result, _ = tiny_checkpoint
    copy = _copy_ml_100k(tmp_path)
    path = os.path.join(copy, "ml-100k.item")
    with open(path, encoding="utf-8") as f:
        header, first, *rest = f.read().splitlines()
    cells = first.split("\t")
    cells[1] = cells[1] + " (edited)"
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([header, "\t".join(cells), *rest]) + "\n")
    with pytest.raises(DataMismatchError, match="differs"):
        Recommender(result["saved_model_file"], {"data_path": str(tmp_path)})
