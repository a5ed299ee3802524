"""RecBole models whose checkpoints hold numpy or scipy values (ItemKNN, EASE) reload under torch's weights-only
load: their extra parameters are written as tensors and read back as what they were."""

import io
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_msl.cli import main
from recbole_msl.errors import ConfigError
from recbole_msl.recbole_seam.plain_state import from_plain, to_plain


def test_numpy_and_sparse_values_round_trip_through_a_weights_only_load():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(4, 3)).astype(np.float32)
    sparse = sp.random(6, 5, density=0.3, format="csr", random_state=0)
    value = {"w": sparse, "pred_mat": sparse.tolil(), "item_similarity": dense, "count": np.int64(7),
             "tensor": torch.arange(3), "none": None}
    buffer = io.BytesIO()
    torch.save(to_plain(value), buffer)
    buffer.seek(0)
    back = from_plain(torch.load(buffer, weights_only=True))
    assert back["w"].format == "csr" and back["pred_mat"].format == "lil"
    assert (back["w"] != sparse).nnz == 0 and (back["pred_mat"].tocsr() != sparse).nnz == 0
    np.testing.assert_array_equal(back["item_similarity"], dense)
    assert back["count"] == 7 and back["none"] is None and torch.equal(back["tensor"], torch.arange(3))


def test_a_value_no_weights_only_checkpoint_can_hold_is_named():
    with pytest.raises(ConfigError, match="other_parameter.w is a set"):
        to_plain({"w": {1, 2}}, "other_parameter")


def test_itemknn_trains_and_its_best_model_reloads_for_the_test(tmp_path, capsys):
    """ItemKNN keeps a scipy similarity matrix: its reload for the test used to fail under the weights-only load."""
    args = ["--model=ItemKNN", "--dataset=ml-100k", "--epochs=1", f"--checkpoint_dir={tmp_path}",
            "--show_progress=False"]
    assert main(args) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1].rsplit(": ", 1)[1]  # the summary names the result file
    with open(path) as f:
        result = json.load(f)
    assert result["model"] == "ItemKNN" and result["test_rows"] == 943
    assert result["test_result"]["hit@10"] > 0.02  # chance is 10 of 1682 items (0.006)
