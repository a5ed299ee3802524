"""Other Hugging Face causal LMs than Llama: a GPT-2 (fused c_attn, learned positions) and a Qwen2."""

import os

import pytest
import torch
from safetensors.torch import load_file

from recbole_msl import Recommender, run


@pytest.mark.parametrize("kind, targets", [("gpt2", ["c_attn"]), ("qwen2", ["q_proj", "v_proj"])])
def test_other_architectures_train_and_rank(kind, targets, tiny_model_dir, tiny_run_config):
    result = run("LLMMSL", "ml-100k", config_dict={**tiny_run_config, "llm_path": tiny_model_dir(kind),
                                                   "lora_target_modules": targets, "eval_max_users": 3})
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values()) and "ndcg@10" in result["test_result"]
    # trained: LoRA's B starts at zero, and every adapter of the named modules moved
    weights = load_file(os.path.join(result["saved_model_file"], "adapter_model.safetensors"))
    b_weights = [v for k, v in weights.items() if "lora_B" in k]
    assert b_weights and all(any(t in k for t in targets) for k in weights)
    assert all(bool(v.abs().sum()) for v in b_weights)
    # ranks: the saved adapter gives 5 distinct real titles, best first
    top = Recommender(result["saved_model_file"]).recommend(["1", "50", "172"], topk=5)
    scores = [score for _, _, score in top]
    assert len({item for item, _, _ in top}) == 5 and all(title for _, title, _ in top)
    assert scores == sorted(scores, reverse=True) and all(torch.isfinite(torch.tensor(scores)))
