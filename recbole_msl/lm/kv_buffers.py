"""A KV-cache layer whose keys and values sit in preallocated buffers that appending writes into.

Hugging Face's DynamicLayer concatenates the whole cache on every appended token; during beam
search that copy dominates. Both decoding layouts (:class:`recbole_msl.lm.cached_lm._BeamLayerCache`
and :class:`recbole_msl.lm.beam_attention.UserPromptLayer`) keep their buffers here and differ only
in what the buffers hold and how beams are reordered.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class BufferedLayer(DynamicLayer):
    """``buffers`` = [keys, values], each [N, h, capacity, d], filled up to ``length`` columns.

    ``offset`` counts cached tokens held outside the buffers (reported by :meth:`get_seq_length`).
    """

    offset = 0

    def _start(self, buffers: list[torch.Tensor], length: int) -> None:
        self.buffers, self.length = buffers, length
        self.dtype, self.device, self.is_initialized = buffers[0].dtype, buffers[0].device, True
        self._expose()

    def _expose(self):
        self.keys, self.values = (b[:, :, :self.length] for b in self.buffers)  # [N, h, length, d] views

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.buffers[0].shape[2]:  # beyond the capacity (never with the trie's depth): grow
            self.buffers = [torch.cat([b, b.new_empty(*b.shape[:2], end - b.shape[2], b.shape[3])], 2)
                            for b in self.buffers]
        for buffer, states in zip(self.buffers, (key_states, value_states)):
            buffer[:, :, self.length:end] = states
        self.length = end
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.offset + self.length
