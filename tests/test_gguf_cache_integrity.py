"""The dequantised GGUF cache is checked against its checksums on every load: a damaged, truncated or unlisted
cache is never loaded; it is removed with a warning (and written again by the next load)."""

import logging
import os

import pytest

from recbole_msl.lm import gguf_cache


@pytest.fixture
def cached(tiny_llm, tmp_path):
    """(gguf file, cache root, cached folder) of the tiny model stored as if dequantised from a GGUF file."""
    model, tokenizer = tiny_llm
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    root = str(tmp_path / "cache")
    folder = gguf_cache.store(model, tokenizer, str(gguf), root)
    assert folder is not None and gguf_cache.find(str(gguf), root) == folder
    return str(gguf), root, folder


def _overwrite_middle(path, size):
    length = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(length // 2)
        f.write(os.urandom(min(size, length // 4)))


@pytest.mark.parametrize("damage", ["overwritten", "truncated", "no manifest"])
def test_a_damaged_cache_is_removed_not_loaded(cached, damage, caplog):
    gguf, root, folder = cached
    weights = os.path.join(folder, "model.safetensors")
    if damage == "overwritten":  # same size, other bytes: only a checksum tells
        _overwrite_middle(weights, 4 << 20)
    elif damage == "truncated":
        os.truncate(weights, os.path.getsize(weights) // 2)
    else:  # a cache written before caches had checksums
        os.remove(os.path.join(folder, "manifest.json"))
    with caplog.at_level(logging.WARNING):
        assert gguf_cache.find(gguf, root) is None
    why = "was written before caches carried checksums" if damage == "no manifest" else "is damaged"
    assert why in caplog.text and not os.path.exists(folder)


def test_a_sound_cache_is_found_again(cached, tiny_llm):
    gguf, root, folder = cached
    assert gguf_cache.find(gguf, root) == folder
    model, tokenizer = tiny_llm
    assert gguf_cache.store(model, tokenizer, gguf, root) == folder  # written again over itself, still sound
    assert gguf_cache.find(gguf, root) == folder
