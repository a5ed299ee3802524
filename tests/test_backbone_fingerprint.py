"""A checkpoint knows the backbone it was trained on: another model of the same architecture is refused with one
line, the same weights in another dtype are not."""

import copy
import json
import os

import pytest
import torch

from recbole_msl import Recommender
from recbole_msl.errors import DataMismatchError
from recbole_msl.lm.fingerprint import fingerprint_difference, weights_fingerprint


@pytest.fixture(scope="module")
def other_llm_dir(tiny_llm_dir, tmp_path_factory):
    """The tiny Llama's architecture and tokenizer with other weights (another seed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("other-llama")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_llm_dir).save_pretrained(folder)
    return str(folder)


def test_the_same_weights_match_in_any_dtype_and_other_weights_do_not(tiny_llm, other_llm_dir):
    from transformers import AutoModelForCausalLM

    model, _ = tiny_llm
    saved = weights_fingerprint(model)
    assert saved["samples"] and fingerprint_difference(saved, saved) is None
    for dtype in (torch.bfloat16, torch.float16):  # a copy: the fixture's model is shared
        assert fingerprint_difference(saved, weights_fingerprint(copy.deepcopy(model).to(dtype))) is None, dtype
    other = weights_fingerprint(AutoModelForCausalLM.from_pretrained(other_llm_dir))
    assert "holds other values" in fingerprint_difference(saved, other)


def test_recommending_with_another_backbone_of_the_same_architecture_is_refused(tiny_checkpoint, other_llm_dir):
    result, _ = tiny_checkpoint
    folder = result["saved_model_file"]
    with open(os.path.join(folder, "msl_state.json")) as f:
        assert json.load(f)["backbone"]["samples"]  # recorded with the adapter
    with pytest.raises(DataMismatchError, match="was trained on another backbone") as info:
        Recommender(folder, {"llm_path": other_llm_dir})
    assert "\n" not in str(info.value) and "--llm_path=" in str(info.value)
    assert Recommender(folder).recommend(["1", "50"], topk=3)  # its own backbone still loads
