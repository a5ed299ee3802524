"""Loading a backbone leaves the random generators alone, so the LoRA weights drawn next are the same whether the
backbone came from a GGUF file, its dequantised cache or a model folder (transformers draws on some paths only)."""

import random

import numpy as np
import pytest
import torch

from recbole_msl.lm import gguf_cache
from recbole_msl.lm.backbone import load_backbone
from recbole_msl.lm.options import BackboneOptions


@pytest.fixture(params=["save_pretrained", "gguf cache"])
def model_folder(request, tiny_llm_dir, tiny_llm, tmp_path):
    """The tiny model as a save_pretrained folder, and as the GGUF cache stores it (the tied embedding once, under
    lm_head.weight, so transformers initialises embed_tokens at random before tying it: a draw on this path only)."""
    if request.param == "save_pretrained":
        return tiny_llm_dir
    stand_in = tmp_path / "tiny.gguf"
    stand_in.write_bytes(b"GGUF stand-in")
    return gguf_cache.store(*tiny_llm, str(stand_in), str(tmp_path / "cache"))


def _states():
    return random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()


def test_loading_a_model_folder_moves_no_random_generator(model_folder):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    python, numpy_state, torch_state = _states()
    load_backbone(BackboneOptions.from_mapping({"llm_path": model_folder, "llm_dtype": "float32"}), torch.device("cpu"))
    after = _states()
    assert after[0] == python and np.array_equal(after[1], numpy_state) and torch.equal(after[2], torch_state)


def test_the_same_seed_gives_the_same_lora_weights_after_a_load(model_folder):
    from recbole_msl.lm.backbone import wrap_with_lora
    from recbole_msl.lm.options import LoraOptions

    def lora_after_load(loads):
        torch.manual_seed(7)
        for _ in range(loads):
            model, _ = load_backbone(BackboneOptions.from_mapping({"llm_path": model_folder}), torch.device("cpu"))
        wrapped = wrap_with_lora(model, LoraOptions())
        return {k: v.clone() for k, v in wrapped.state_dict().items() if "lora_A" in k}

    once, twice = lora_after_load(1), lora_after_load(2)  # a load that drew would shift the second run's draws
    assert once and all(torch.equal(once[k], twice[k]) for k in once)
