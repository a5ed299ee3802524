"""The array-based sequence augmentation builds exactly RecBole's (history, next item) rows."""

import pytest
import torch
from recbole.data.dataset.dataset import Dataset

from recbole_msl.recbole_seam import sequence_augmentation
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset
from recbole_msl.recbole_seam.sequence_augmentation import data_augmentation, recbole_data_augmentation


def _augmented(config, augmentation):
    """``inter_feat`` of ``config``'s data set after ``augmentation``, as RecBole's build() would make it."""
    dataset = create_dataset(config)
    Dataset._change_feat_format(dataset)  # DataFrame -> Interaction, the step build() takes before augmenting
    augmentation(dataset)
    return dataset


def _assert_same_rows(config, monkeypatch):
    recboles = _augmented(config, recbole_data_augmentation)
    with monkeypatch.context() as patch:  # the array path itself, not its fallback to RecBole's loop
        patch.setattr(sequence_augmentation, "recbole_data_augmentation", None)
        ours = _augmented(config, data_augmentation)
    assert sorted(ours.inter_feat.columns) == sorted(recboles.inter_feat.columns)
    for field in recboles.inter_feat.columns:
        got, want = ours.inter_feat[field], recboles.inter_feat[field]
        assert got.dtype == want.dtype and got.shape == want.shape, field
        assert torch.equal(got, want), field
    assert ours.field2seqlen == recboles.field2seqlen and ours.field2type == recboles.field2type
    return ours


def test_ml_100k_rows_equal_recboles(monkeypatch):
    config = Config(model="SASRec", dataset="ml-100k", config_dict={"MAX_ITEM_LIST_LENGTH": 50})
    ours = _assert_same_rows(config, monkeypatch)
    lengths = ours.inter_feat["item_length"]
    assert len(lengths) == 100000 - 943 and int(lengths.max()) == 50 and int(lengths.min()) == 1


@pytest.mark.parametrize("max_len", [1, 3])
def test_float_token_seq_and_lone_users_equal_recboles(tmp_path, monkeypatch, max_len):
    """Histories cut at max_len, a float and a token_seq field, equal timestamps, a user with one interaction."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float\ttags:token_seq"]
    for user in range(5):
        for step in range(user + 1):  # user 0 has one interaction: no row
            rows.append(f"u{user}\ti{(user * 3 + step) % 7}\t{step + 0.5}\t{step // 2}\tt{step} t{user}")
    (folder / "tiny.inter").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = Config(model="SASRec", dataset="tiny",
                    config_dict={"data_path": str(tmp_path), "MAX_ITEM_LIST_LENGTH": max_len,
                                 "load_col": None, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                                                                 "group_by": "user", "mode": "full"}})
    ours = _assert_same_rows(config, monkeypatch)
    assert len(ours.inter_feat) == sum(range(5)) and ours.inter_feat["tags_list"].dim() == 3
    assert int(ours.inter_feat["item_length"].max()) == max_len
