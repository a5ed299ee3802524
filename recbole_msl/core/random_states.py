"""Work done aside from training (an extra validation, loading a model) must not move the random generators the
training draws from: this runs it with Python's, numpy's and torch's CPU states put back afterwards."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


@contextlib.contextmanager
def kept_random_states(device: torch.device | None = None):
    """``with kept_random_states(): ...``: the block's random draws leave no trace on the generators (also the CUDA
    generator of ``device`` when it is a GPU)."""
    python, numpy_state = random.getstate(), np.random.get_state()
    gpus = [device.index or 0] if device is not None and device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=gpus):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)
