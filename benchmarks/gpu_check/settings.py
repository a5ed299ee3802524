"""What the checks are run with: the backbone sizes, each device's plan, the tolerances, check 2's catalogue."""

from __future__ import annotations

import os

import torch

DESCRIPTION = "the GPU path, exercised in one command."  # the command's --help line
BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCHMARKS)
TOKENIZER_DIR = os.path.join(BENCHMARKS, "assets", "smollm2-tokenizer")


# ------------------------------------------------------------------ backbones
# Llama configs; the vocabulary, BOS/EOS/pad come from the tokenizer (SmolLM2's 49,152 tokens), embeddings are tied.
SIZES = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 2048},  # as tests/conftest.py's tiny Llama
    "135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
             "num_key_value_heads": 3, "max_position_embeddings": 8192, "rope_theta": 100000.0,
             "rms_norm_eps": 1e-5},  # SmolLM2-135M's config
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "max_position_embeddings": 8192, "rope_theta": 100000.0,
           "rms_norm_eps": 1e-5},  # Llama-3.2-1B's body with SmolLM2's vocabulary
}


# Embedding std: the tied head then gives logits of std ~3 (tiny: as conftest, ~6), so rankings are not all near-ties.
EMBED_STD = {"tiny": 1.0, "135m": 3 / 576 ** 0.5, "1b": 3 / 2048 ** 0.5}


# Per device: batch of the checks, train-step batch and timed rounds, ranking users, users decoded together,
# matmul peak (size, repeats, dtype), e2e budget.
PLANS = {
    "cpu": {"check_batch": 8, "step_batch": 8, "step_repeats": 3, "rank_users": 2, "decode_batch": 10,
            "peak": (2048, 3, torch.float32),
            "e2e": {"train_samples_per_epoch": 16, "train_batch_size": 8, "micro_batch_size": 4, "eval_max_users": 6,
                    "decode_batch_size": 3}},
    "cuda": {"check_batch": 8, "step_batch": 32, "step_repeats": 5, "rank_users": 32, "decode_batch": 16,
             "peak": (8192, 10, torch.bfloat16),
             "e2e": {"train_samples_per_epoch": 64, "train_batch_size": 16, "micro_batch_size": 8,
                     "eval_max_users": 32, "decode_batch_size": 16}},
}


# ----------------------------------------------------------------- tolerances
TOL = {
    "loss_rel": 2e-2,        # [1] |bf16 - fp32| / |fp32| of a batch's mean loss (MSL, LML)
    "tau_hat_abs": 5e-2,     # [1] |ATS raw estimate from bf16 - from fp32 logits| (tau units; ATS clamps to [1.5, 5])
    "grad_cos": 0.99,        # [1] cosine of all LoRA gradients (concatenated), bf16 vs fp32
    "grad_norm_rel": 5e-2,   # [1] | |g_bf16| - |g_fp32| | / |g_fp32|
    "beam_bf16": 1e-1,       # [2] |bf16 beam score - fp32 exhaustive score| (length-normalised log-prob, nats)
    "beam_fp32": 1e-3,       # [2] the same for the fp32 search
    "swap_gap": 2e-1,        # [2] bf16 may order two items differently only if their fp32 scores are this close
    "attn_fp32": 1e-4,       # [3] atol = rtol of the beam attention vs SDPA on full rows, fp32
    "attn_bf16": 2e-2,       # [3] the same, bf16 (as tests/test_beam_attention.py)
    "gc_loss_rel": 1e-4,     # [4] checkpointed vs plain loss, fp32
    "gc_grad_rel": 1e-3,     # [4] |g_ckpt - g_plain| / |g_plain|, fp32
    "step_loss_rel_fp32": 1e-4,  # [M1] ours vs reference-style loss (train_step.check_equal's tolerance)
    "rank_score_fp32": 1e-3,     # [M2] ours vs Hugging Face generate, fp32: same titles, scores this close
}


CHECK_NAMES = {
    "1": "bf16 vs fp32: MSL/LML loss, ATS, LoRA grads",
    "2": "bf16 constrained beam search vs fp32 exhaustive",
    "3": "beam attention vs SDPA on full rows",
    "4": "gradient checkpointing vs plain LoRA grads (fp32)",
    "5": "end to end: recbole_msl.run train + full-sort eval",
    "M1": "measure: train step, ours vs reference-style",
    "M2": "measure: ranking, ours vs HF generate",
    "setup": "build and load the backbone",
}


# Catalogue of check 2 (10 titles with shared prefixes) and the history titles its prompts are made of.
CATALOGUE = ["Star Wars (1977)", "Star Trek: First Contact (1996)", "Star Trek: Generations (1994)", "Toy Story (1995)",
             "Twelve Monkeys (1995)", "Fargo (1996)", "Heat (1995)", "Alien (1979)", "Aliens (1986)",
             "The Godfather (1972)"]


HISTORY = ["Babe (1995)", "Casino (1995)", "Se7en (1995)", "Braveheart (1995)", "Apollo 13 (1995)",
           "Jurassic Park (1993)", "Pulp Fiction (1994)", "Forrest Gump (1994)", "The Lion King (1994)",
           "Men in Black (1997)"]
