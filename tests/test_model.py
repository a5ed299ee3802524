"""LLMMSL on ml-100k with the tiny backbone: losses, scoring and training against references."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from recbole_msl.errors import ConfigError
from recbole_msl.model.decoders import DECODERS
from recbole_msl.model.llmmsl import LLMMSL
from recbole_msl.model.objectives import OBJECTIVES
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset, data_preparation


def make_config(overrides, **extra):
    return Config(model="LLMMSL", dataset="ml-100k", config_dict={**overrides, **extra})


@pytest.fixture(scope="module")
def setup(tiny_llm_dir, tmp_path_factory):
    overrides = {"llm_path": tiny_llm_dir, "num_beams": 10, "eval_max_users": 4, "show_progress": False,
                 "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))}
    config = make_config(overrides)
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = LLMMSL(config, train._dataset)
    model.eval()  # no LoRA dropout: deterministic forward passes
    batch = next(iter(train))[:6]
    return config, dataset, model, batch, valid


@pytest.fixture(autouse=True)
def restored(setup):
    """Tests change the shared model (options, tau, LoRA weights, mode); each gets it back as it was."""
    model = setup[2]
    opts, tau, mode = dataclasses.replace(model.opts), model.tau, model.training
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    yield model
    model.opts, model.tau = opts, tau
    model.train(mode)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in weights:
                param.copy_(weights[name])
                param.grad = None


def dense_inputs(model, batch):
    """Prompt + response ids per sample and the reference valid sets, built without the trie."""
    sequences, _ = model.prompts.sequences()
    rows = []
    for history, target in zip(model._histories(batch), batch[model.POS_ITEM_ID].tolist()):
        prompt, response = model.prompts.prompt(history), model.prompts.response(target)
        valid = [sorted({s[k] for s in sequences if s[:k] == response[:k]}) for k in range(len(response))]
        rows.append((prompt, response, valid))
    return rows


def test_msl_loss_equals_dense_masked_cross_entropy(setup):
    _, _, model, batch, _ = setup
    model.opts.adaptive_tau, model.tau = False, 2.5
    total, count = model.loss_terms(batch)
    terms = []
    with torch.no_grad():
        for prompt, response, valid in dense_inputs(model, batch):
            logits = model.llm(input_ids=torch.tensor([prompt + response[:-1]])).logits[0, len(prompt) - 1:]
            for k, tok in enumerate(response):
                if len(valid[k]) < 2:
                    continue  # one-token positions carry no loss
                masked = torch.full_like(logits[k], float("-inf"))
                masked[valid[k]] = logits[k, valid[k]] / 2.5
                terms.append(2.5 * F.cross_entropy(masked[None], torch.tensor([tok])))
    assert count == len(terms) > 0
    torch.testing.assert_close(total.detach() / count, torch.stack(terms).mean(), rtol=1e-4, atol=1e-4)


def test_lml_loss_equals_hugging_face_label_loss(setup):
    _, _, model, batch, _ = setup
    model.opts.loss = "lml"
    total, count = model.loss_terms(batch)
    losses, tokens = [], 0
    with torch.no_grad():
        for prompt, response, _ in dense_inputs(model, batch):
            ids = torch.tensor([prompt + response])
            labels = torch.tensor([[-100] * len(prompt) + response])  # prompt tokens carry no loss
            losses.append(model.llm(input_ids=ids, labels=labels).loss * len(response))
            tokens += len(response)
    assert count == tokens
    torch.testing.assert_close(total.detach(), torch.stack(losses).sum(), rtol=1e-4, atol=1e-3)


def test_predict_equals_beam_scores(setup):
    _, _, model, _, valid = setup
    batch = next(iter(valid))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        user = batch[:1]
        found = torch.isfinite(scores[0]).nonzero().squeeze(1)[:4]
        pairs = user.repeat_interleave(len(found))
        pairs.update(type(batch)({model.ITEM_ID: found}))
        torch.testing.assert_close(model.predict(pairs), scores[0, found], rtol=1e-4, atol=1e-4)
    assert torch.isfinite(scores).sum(1).min() >= model.opts.num_beams  # at least num_beams items scored


def test_training_step_moves_lora_only(setup):
    _, _, model, batch, _ = setup
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = model.calculate_loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    model.eval()
    named = dict(model.named_parameters())
    assert any(not torch.equal(named[n], v) for n, v in trainable.items() if "lora_B" in n)
    assert all(torch.equal(named[n], v) for n, v in frozen.items())


def test_ats_updates_tau_when_the_step_ends_from_each_samples_title_choice(setup):
    _, _, model, batch, _ = setup
    model.opts.adaptive_tau, model.tau = True, 1.5
    model.opts.ats_range, model.opts.ats_alpha = (0.01, 50.0), 1.0  # see the raw estimate
    model.train()
    with torch.no_grad():
        model.loss_terms(batch)
    assert model.tau == 1.5  # a forward pass only collects statistics
    record = model.end_ats_step()
    assert record["tau"] == 1.5 and record["tau_hat"] == min(max(record["tau_hat_raw"], 0.01), 50.0)
    # m: the mean over samples of each one's largest valid set (the title choice)
    largest = [max(len(v) for v in valid) for _, _, valid in dense_inputs(model, batch)]
    assert record["m"] == pytest.approx(sum(largest) / len(largest))
    assert min(largest) > 100  # a choice among many of ml-100k's titles, not among a few quote tokens


def test_titles_are_verbatim_with_articles_restored(setup):
    _, dataset, model, _, _ = setup
    token2id = dataset.field2token_id[dataset.iid_field]
    assert model.titles[token2id["1"]] == "Toy Story"
    assert "The American President" in model.titles
    assert not any(t.endswith(", The") for t in model.titles[1:])
    # several items share a title: all of them sit on one trie leaf
    by_title = {}
    for item, title in enumerate(model.titles[1:], 1):
        by_title.setdefault(title, []).append(item)
    shared = [items for items in by_title.values() if len(items) > 1]
    assert shared, "ml-100k has duplicate titles"
    for items in shared:
        assert len({int(model.trie.item_leaf[i]) for i in items}) == 1


@pytest.mark.parametrize("override, message", [
    ({"topk": [5, 10, 50]}, "exceeds num_beams"),
    ({"metrics": ["Recall", "GAUC"]}, "needs a score for every item"),
    ({"metrics": ["AUC"]}, "needs a score for every item"),
    ({"llm_loss": "focal"}, f"llm_loss must be {' or '.join(OBJECTIVES)}"),
    ({"decoder": "greedy"}, f"decoder must be {' or '.join(DECODERS)}"),
    ({"tau": "hot"}, "tau must be a number"),
    ({"item_text_field": "plot"}, "not a column"),
    ({"llm_path": "/nowhere/model"}, "does not exist"),
    ({"lora_r": 0}, "lora_r must be a positive integer"),
])
def test_bad_options_give_one_line_errors(tiny_llm_dir, override, message):
    with pytest.raises(ConfigError, match=message) as info:
        config = make_config({"llm_path": tiny_llm_dir}, **override)
        LLMMSL(config, create_dataset(config))
    assert "\n" not in str(info.value)


def test_micro_batches_accumulate_to_the_full_batch_gradient(setup):
    from recbole_msl.trainer import LLMMSLTrainer

    config, _, model, batch, _ = setup
    model.opts.adaptive_tau, model.tau = False, 1.5
    trainer = LLMMSLTrainer(config, model)
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.0  # keep the weights: only the gradients are compared
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda step: 1.0)
    trainer.clip_grad_norm = None
    grads = []
    for micro in (len(batch), 4, 1):
        trainer.micro_batch_size = micro
        loss = trainer._optimizer_step(batch)
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, loss))
    (full, full_loss), *others = grads
    for parts, loss in others:
        assert loss == pytest.approx(full_loss, rel=1e-5)
        for name, grad in full.items():
            torch.testing.assert_close(parts[name], grad, rtol=1e-4, atol=1e-7)


def test_a_decoder_that_returns_fewer_titles_than_topk_is_refused(monkeypatch):
    """The registry entry says how many titles a search returns, and the option check asks it."""
    from recbole_msl.model import decoders
    from recbole_msl.model.options import LLMMSLOptions

    narrow = decoders.Decoder(search=None, capacity=lambda opts: 1)
    monkeypatch.setitem(decoders.DECODERS, "greedy", narrow)
    config = make_config({"decoder": "greedy", "topk": [1], "valid_metric": "NDCG@1"})
    assert LLMMSLOptions.from_config(config).decoder == "greedy"
    with pytest.raises(ConfigError, match="topk 10 exceeds the 1 titles decoder greedy returns"):
        LLMMSLOptions.from_config(make_config({"decoder": "greedy", "topk": [5, 10]}))  # valid_metric NDCG@10
    with pytest.raises(ConfigError, match="topk 20 exceeds num_beams 10; raise num_beams to at least 20"):
        LLMMSLOptions.from_config(make_config({"topk": [20], "num_beams": 10, "valid_metric": "NDCG@20"}))
