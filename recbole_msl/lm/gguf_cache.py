"""A dequantised copy of a GGUF backbone, kept on disk so that only the first load pays for the dequantisation.

Loading the default SmolLM2 GGUF parses its metadata three times (tokenizer, config, weights) and
dequantises every tensor: about 30 s on a 2-core CPU, most of a ``recommend`` call. The first load
writes the fp32 weights (safetensors), the config and the tokenizer to
``<gguf_cache_dir>/<name>-<size>-<mtime>-transformers<version>/``; later loads read that folder in a
few seconds. The weights are the very tensors the GGUF loader produced (tests check equality), and a
new file, size, time stamp or transformers version gets a new folder. The folder carries a manifest of
SHA-256 checksums (as adapter folders do), checked on every load (about a second for the 135M model's
540 MB): a damaged or truncated cache is removed with a warning and rebuilt from the GGUF, never loaded.
A cache that cannot be written (read-only or full disk) is skipped with a warning; ``gguf_cache: False``
turns it off.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile

from safetensors import SafetensorError

from ..checkpoint import manifest_problem, write_manifest
from ..errors import as_os_error

logger = logging.getLogger(__name__)

COMPLETE = "recbole_msl_cache.json"  # written last: a folder without it is not used


def cache_root(enabled: bool, chosen: str | None) -> str | None:
    """The cache folder from ``gguf_cache`` / ``gguf_cache_dir`` (None when turned off)."""
    if enabled is False:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.expanduser(str(chosen)) if chosen else os.path.join(base, "recbole-msl", "backbones")


def cached_folder(gguf_path: str, root: str) -> str:
    import transformers

    stat = os.stat(gguf_path)
    stem = os.path.splitext(os.path.basename(gguf_path))[0]
    return os.path.join(root, f"{stem}-{stat.st_size}-{int(stat.st_mtime)}-transformers{transformers.__version__}")


def find(gguf_path: str, root: str | None) -> str | None:
    """The complete cached folder of ``gguf_path`` whose files match their checksums, or None (a damaged one, or
    one written before caches had checksums, is removed so that the next fp32 load writes it again)."""
    if root is None:
        return None
    folder = cached_folder(gguf_path, root)
    if not os.path.isfile(os.path.join(folder, COMPLETE)):
        return None
    problem = manifest_problem(folder, needed=("model.safetensors", "config.json"))
    if problem is None:
        return folder
    why = ("was written before caches carried checksums" if problem.startswith("no ")
           else f"is damaged ({problem})")
    logger.warning(f"the cached backbone {folder} {why}; removing it and loading {gguf_path} itself (the cache is "
                   f"written again)")
    shutil.rmtree(folder, ignore_errors=True)
    return None


def store(model, tokenizer, gguf_path: str, root: str | None) -> str | None:
    """Write the loaded (fp32, dequantised) model and its tokenizer to the cache; None if that is impossible."""
    import json

    import torch
    from safetensors.torch import save_model

    if root is None or any(p.dtype != torch.float32 for p in model.parameters()):
        return None  # only the exact fp32 dequantisation is cached
    folder = cached_folder(gguf_path, root)
    staging = None
    try:
        os.makedirs(root, exist_ok=True)
        staging = tempfile.mkdtemp(dir=root, prefix=".tmp-")
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights below are plain fp32
        config.save_pretrained(staging)
        save_model(model, os.path.join(staging, "model.safetensors"))  # tied embeddings are stored once
        tokenizer.save_pretrained(staging)
        write_manifest(staging)  # checksums of every file, checked by find()
        with open(os.path.join(staging, COMPLETE), "w", encoding="utf-8") as f:
            json.dump({"gguf": os.path.abspath(gguf_path)}, f)
        if os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier attempt
        os.replace(staging, folder)
        return folder
    except (OSError, SafetensorError) as err:
        if isinstance(err, SafetensorError):
            err = as_os_error(err, staging)
        logger.warning(f"could not cache the dequantised backbone in {root} ({err}); it will be dequantised again "
                       f"next time (set gguf_cache_dir to a writable folder, or gguf_cache: False)")
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
        return None
