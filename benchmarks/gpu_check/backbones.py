"""The synthetic backbones (random Llamas saved with the SmolLM2 tokenizer), their LoRA weights, and a loss with its
LoRA gradients."""

from __future__ import annotations

import gc

import torch

from .settings import EMBED_STD, SIZES, TOKENIZER_DIR


# ------------------------------------------------------------------ helpers
def _free():
    """Give memory back after the caller dropped its references (CUDA: to the device)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _e(x: float) -> str:
    return f"{x:.1e}"


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def build_backbone(size: str, folder: str, device: torch.device, tokenizer) -> dict:
    """A random-weight Llama of ``size`` saved (bf16) with the tokenizer to ``folder``; returns its facts."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, **SIZES[size])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0, EMBED_STD[size])
    model.to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    facts = {"parameters": sum(p.numel() for p in model.parameters()), "embed_std": EMBED_STD[size],
             "rope": getattr(config, "rope_parameters", None) or getattr(config, "rope_theta", None), **SIZES[size]}
    del model
    _free()
    return facts


def set_lora(model, seed: int = 0):
    """Non-zero LoRA weights from a CPU generator (peft starts B at zero, which leaves A without gradient)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                std = param.shape[1] ** -0.5 if "lora_A" in name else 0.02
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def copy_lora(source, target):
    weights = dict(source.named_parameters())
    with torch.no_grad():
        for name, param in target.named_parameters():
            if "lora_" in name:
                param.copy_(weights[name])


def loss_and_grads(model, batch, loss: str):
    """(mean loss, LoRA gradients (fp32, CPU), ATS record) of one training-mode pass; model state restored."""
    saved_loss, tau = model.opts.loss, model.tau
    model.opts.loss = loss
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        total, count = model.loss_terms(batch)
        value = total / max(count, 1)
        value.backward()
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().cpu().clone()
                 for n, p in model.named_parameters() if p.requires_grad}
        ats = model.end_ats_step()
    finally:
        model.opts.loss, model.tau = saved_loss, tau
        model.zero_grad(set_to_none=True)
        model.eval()
    return float(value.detach()), grads, ats


def grad_agreement(reference: dict, other: dict) -> dict:
    """Cosine, relative norm difference and relative error of ``other`` against ``reference`` (all LoRA tensors)."""
    a = torch.cat([reference[n].flatten().double() for n in reference])
    b = torch.cat([other[n].flatten().double() for n in reference])
    per_tensor = [torch.nn.functional.cosine_similarity(reference[n].flatten().double(), other[n].flatten().double(),
                                                        dim=0) for n in reference if reference[n].norm() > 0]
    norm = float(a.norm())
    return {"cos": float(torch.nn.functional.cosine_similarity(a, b, dim=0)),
            "min_tensor_cos": float(min(per_tensor)) if per_tensor else float("nan"),
            "norm_rel": abs(float(b.norm()) - norm) / norm if norm else float("inf"),
            "err_rel": float((b - a).norm()) / norm if norm else float("inf"),
            "norm": norm, "tensors": len(reference)}
