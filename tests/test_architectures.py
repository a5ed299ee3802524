"""Other Hugging Face causal LMs than Llama: a GPT-2 (fused c_attn, learned positions) and a Qwen2."""

import pytest
import torch

from recbole_msl import run


def save_tiny(kind, tokenizer, folder):
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
              "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.eos_token_id}
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=1024, **common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=1024, **common))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind, targets", [("gpt2", ["c_attn"]), ("qwen2", ["q_proj", "v_proj"])])
def test_other_architectures_train_and_rank(kind, targets, smol_tokenizer, tiny_run_config, tmp_path):
    path = save_tiny(kind, smol_tokenizer, tmp_path / kind)
    result = run("LLMMSL", "ml-100k", config_dict={**tiny_run_config, "llm_path": path,
                                                   "lora_target_modules": targets, "eval_max_users": 3})
    assert "ndcg@10" in result["test_result"]
