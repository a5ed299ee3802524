"""Where transformers offers no switch for what the plugin needs, the one object it patches, kept here.

Each patch names the object it replaces, so a test (tests/test_layout.py) fails when a transformers release
renames or removes it, instead of the patch silently doing nothing.
"""

from __future__ import annotations

import contextlib
import functools

# (module, attribute) replaced for a while below
PATCHED = [("transformers.modeling_gguf_pytorch_utils", "tqdm")]


@contextlib.contextmanager
def quiet_loading(show: bool):
    """Hugging Face's loading progress bars on or off within the block. Its own switch covers all but the GGUF
    reader, which calls plain ``tqdm`` that no setting reaches: its module's ``tqdm`` is a silent one meanwhile."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loading
    from transformers.utils import logging as hf_logging

    was_enabled, gguf_tqdm = hf_logging.is_progress_bar_enabled(), getattr(gguf_loading, "tqdm", None)
    if not show:
        hf_logging.disable_progress_bar()
        if gguf_tqdm is not None:
            gguf_loading.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()
        if gguf_tqdm is not None:
            gguf_loading.tqdm = gguf_tqdm
