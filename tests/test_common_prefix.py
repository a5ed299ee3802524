"""The prompt prefix common to a batch (run once) changes nothing but speed: losses, gradients, rankings."""

import pytest
import torch

from recbole_msl.lm.common_prefix import MIN_COMMON_TOKENS, common_prefix_length
from recbole_msl.model.llmmsl import LLMMSL
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset, data_preparation


def test_common_prefix_length_leaves_a_token_and_respects_limit():
    rows = [[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 9], [1, 2, 3, 4, 5, 6, 8]]
    assert common_prefix_length(rows) == 5
    assert common_prefix_length(rows, limit=4) == 4
    same = [[1, 2, 3, 4, 5, 6]] * 3
    assert common_prefix_length(same) == 5  # never the whole row: something must be left to run
    assert common_prefix_length([[1, 2, 3, 4, 5, 6]]) == 0  # one row: nothing to share
    short = [[1, 2, 3, 9], [1, 2, 3, 8]]
    assert common_prefix_length(short) == 0 < MIN_COMMON_TOKENS


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen2"])
def model_and_data(request, tiny_llm_dir, tiny_model_dir, tmp_path_factory):
    if request.param == "llama":
        path, targets = tiny_llm_dir, ["q_proj", "v_proj"]
    else:
        path = tiny_model_dir(request.param)
        targets = ["c_attn"] if request.param == "gpt2" else ["q_proj", "v_proj"]
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={
        "llm_path": path, "lora_target_modules": targets, "num_beams": 10, "show_progress": False,
        "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))})
    train, valid, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = LLMMSL(config, train._dataset)
    with torch.no_grad():  # non-zero LoRA B, so the adapters change the prefix's keys and values
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model, next(iter(train))[:6], next(iter(valid))[0][:5]


def _loss_and_grads(model, batch, share):
    model.opts.share_prompt_prefix = share
    model.opts.adaptive_tau, model.tau = False, 2.0
    model.zero_grad(set_to_none=True)
    total, count = model.loss_terms(batch)
    (total / count).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(total.detach() / count), grads


@pytest.mark.parametrize("loss", ["msl", "lml"])
def test_common_prefix_gives_the_same_loss_and_gradients(model_and_data, loss):
    model, batch, _ = model_and_data
    model.eval()  # no dropout, so both paths see the same network
    model.opts.loss = loss
    prompts = [model.prompts.prompt(h) for h in model._histories(batch)]
    assert common_prefix_length(prompts) > 20  # the template and instruction are shared
    plain, plain_grads = _loss_and_grads(model, batch, share=False)
    shared, shared_grads = _loss_and_grads(model, batch, share=True)
    model.opts.loss = "msl"
    assert shared == pytest.approx(plain, rel=1e-5, abs=1e-6)
    assert plain_grads.keys() == shared_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(shared_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(g.abs().sum() > 0 for g in plain_grads.values())


def test_common_prefix_gives_the_same_ranking_and_pair_scores(model_and_data):
    model, _, users = model_and_data
    model.eval()
    model.opts.decode_batch_size = 3  # a full chunk of 3 and a chunk of 2 users
    with torch.no_grad():
        model.opts.share_prompt_prefix = False
        plain = model.full_sort_predict(users)
        model.opts.share_prompt_prefix = True
        shared = model.full_sort_predict(users)
    assert torch.equal(torch.isfinite(plain), torch.isfinite(shared))
    finite = torch.isfinite(plain)
    torch.testing.assert_close(shared[finite], plain[finite], rtol=1e-4, atol=1e-4)
    assert torch.equal(plain.topk(10).indices, shared.topk(10).indices)


def test_gradient_checkpointing_falls_back_to_the_plain_forward(tiny_llm_dir, tmp_path):
    """Under gradient checkpointing the KV cache is off, so the prefix is not shared; the step is unchanged."""
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={
        "llm_path": tiny_llm_dir, "gradient_checkpointing": True, "lora_dropout": 0.0, "num_beams": 10,
        "show_progress": False, "checkpoint_dir": str(tmp_path)})
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = LLMMSL(config, train._dataset)
    batch = next(iter(train))[:4]
    model.train()
    assert model.base.is_gradient_checkpointing
    checkpointed, checkpointed_grads = _loss_and_grads(model, batch, share=True)
    model.base.gradient_checkpointing_disable()
    shared, shared_grads = _loss_and_grads(model, batch, share=True)
    assert checkpointed == pytest.approx(shared, rel=1e-5)
    for name in shared_grads:
        torch.testing.assert_close(checkpointed_grads[name], shared_grads[name], rtol=1e-4, atol=1e-6, msg=name)
