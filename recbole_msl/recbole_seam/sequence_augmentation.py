"""RecBole's sequence augmentation, computed with array operations instead of a Python loop over rows.

``SequentialDataset.data_augmentation`` turns each user's time-ordered interactions into (history, next item)
rows, copying every history into its row one interaction at a time: about 3.4 s of a 9.5-s tiny-backbone run on
ml-100k's 100k interactions, growing with their number (ml-1m has ten times as many), paid by every sequential
run, RecBole's models included.
:func:`data_augmentation` builds the same rows, in the same order, with the same tensors, shapes and dtypes
(``tests/test_sequence_augmentation.py`` compares them with RecBole's own); a field whose values do not have the
shape RecBole's lists expect makes it call RecBole's loop instead. :func:`~.compat.install_array_augmentation`
puts it in RecBole's place.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils.enum_type import FeatureType

recbole_data_augmentation = SequentialDataset.data_augmentation  # RecBole's own, kept for the fallback and tests
BLOCK_ROWS = 1 << 16  # rows gathered at once: bounds the index matrix, not the result


def _list_tail(dataset, field: str) -> tuple:
    """The trailing shape RecBole gives ``field``'s history list after (rows, MAX_ITEM_LIST_LENGTH)."""
    list_len = dataset.field2seqlen[getattr(dataset, f"{field}_list_field")]
    tail = tuple(list_len[1:]) if isinstance(list_len, tuple) else ()
    if (dataset.field2type[field] in (FeatureType.FLOAT, FeatureType.FLOAT_SEQ)
            and field in dataset.config["numerical_features"]):
        tail += (2,)
    return tail


def data_augmentation(self) -> None:
    """(history, next item) rows of every user's interactions sorted by time, each history the at most
    ``MAX_ITEM_LIST_LENGTH`` interactions before the target, left-aligned and zero-padded, as RecBole's."""
    self._aug_presets()
    self._check_field("uid_field", "time_field")
    fields = [f for f in self.inter_feat if f != self.uid_field]
    if any(tuple(self.inter_feat[f].shape[1:]) != _list_tail(self, f) for f in fields):
        recbole_data_augmentation(self)
        return
    max_len = self.config["MAX_ITEM_LIST_LENGTH"]
    self.sort(by=[self.uid_field, self.time_field], ascending=True)
    uids = self.inter_feat[self.uid_field].numpy()
    rows = np.arange(len(uids))
    first = np.ones(len(uids), dtype=bool)
    first[1:] = uids[1:] != uids[:-1]
    user_start = np.maximum.accumulate(np.where(first, rows, 0))
    target_index = rows[~first]  # every interaction but a user's first is a target
    seq_start = np.maximum(user_start[target_index], target_index - max_len)
    item_list_length = (target_index - seq_start).astype(np.int64)

    new_data = self.inter_feat[target_index]
    new_dict = {self.item_list_length_field: torch.tensor(item_list_length)}
    starts, lengths = torch.from_numpy(seq_start), torch.from_numpy(item_list_length)
    offsets = torch.arange(max_len)
    for field in fields:
        value = self.inter_feat[field]
        out = torch.zeros((len(target_index), max_len) + tuple(value.shape[1:]), dtype=value.dtype)
        for begin in range(0, len(target_index), BLOCK_ROWS):
            block = slice(begin, begin + BLOCK_ROWS)
            inside = offsets < lengths[block, None]
            index = torch.where(inside, starts[block, None] + offsets, 0)
            gathered = value[index]
            out[block] = gathered.masked_fill_(~inside.view(inside.shape + (1,) * (gathered.dim() - 2)), 0)
        new_dict[getattr(self, f"{field}_list_field")] = out
    new_data.update(Interaction(new_dict))
    self.inter_feat = new_data
