"""The training examples of ``train_format: sequence``: each user's training items in chunks, and an epoch's batches.

Built once per run from RecBole's training split (its windows joined back into sequences,
:func:`recbole_msl.core.sequences.user_sequences`), so no validation or test item is ever in a chunk.
A chunk holds at most ``MAX_ITEM_LIST_LENGTH`` titles and fits the backbone's context; consecutive chunks of a
user overlap by ``sequence_min_history`` titles, so every training target is trained exactly once per pass.
"""

from __future__ import annotations

import torch

from ..core.sequences import chunk_sequence, user_sequences, window_width


class SequenceExamples:
    """All chunks of a training split, and each epoch's shuffled batches of this process's share."""

    def __init__(self, dataset, model, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        inter = dataset.inter_feat
        seqs, lengths = inter[model.ITEM_SEQ].tolist(), inter[model.ITEM_SEQ_LEN].tolist()
        sequences = user_sequences(inter[dataset.uid_field].tolist(), [s[:n] for s, n in zip(seqs, lengths)],
                                   inter[model.POS_ITEM_ID].tolist(), width=window_width(lengths, model.max_seq_length))
        prompts, opts = model.prompts, model.opts
        budget = prompts.max_length - len(prompts.head_ids)
        self.chunks, self.owners = [], []  # the chunks (each knows its context items) and each one's user
        for sequence in sequences:
            for chunk in chunk_sequence(sequence.items, opts.history_length, opts.sequence_min_history,
                                        prompts.listed_cost, budget, context=sequence.context):
                self.chunks.append(chunk)
                self.owners.append(sequence.user)
        self.rows = len(seqs)  # the split's training rows: one target each
        self.users = len(set(inter[dataset.uid_field].tolist()))
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle

    @property
    def targets(self) -> int:
        """Target titles over all chunks (every training row's target once, unless sequence_min_history leaves
        a sequence's first targets as context)."""
        return sum(len(chunk) - chunk.context for chunk in self.chunks)

    def share(self, size: int | None = None) -> int:
        """Chunks this process trains on in an epoch of ``size`` chunks (all ranks together; default a full pass)."""
        return len(range(self.rank, len(self.chunks) if size is None else size, self.world_size))

    def _pass_order(self, index: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.chunks)))
        generator = torch.Generator().manual_seed(self.seed * 7919 + index)
        return torch.randperm(len(self.chunks), generator=generator).tolist()

    def epoch(self, epoch: int, size: int, step: int):
        """Batches of ``step`` chunks: this process's share of epoch ``epoch``, which is the ``size`` chunks (all
        ranks together) that follow the previous epochs' in a stream of passes, each pass a shuffle of all chunks.
        So epochs smaller than a pass walk through it (every target once per pass, as with whole-pass epochs), and
        the order depends on the seed and the position only: every process agrees on it and a resumed run draws
        the same chunks."""
        total, current, order, mine = len(self.chunks), None, [], []
        for position in range(epoch * size + self.rank, (epoch + 1) * size, self.world_size):
            if position // total != current:  # positions rise, so one pass's order is kept at a time
                current = position // total
                order = self._pass_order(current)
            mine.append(order[position % total])
        for start in range(0, len(mine), step):
            yield [self.chunks[i] for i in mine[start:start + step]]
