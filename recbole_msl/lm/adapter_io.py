"""The LoRA adapter on disk: written and read through peft, so the folder loads with ``PeftModel.from_pretrained``."""

from __future__ import annotations

import os

from safetensors.torch import load_file, save_file

BACKBONE_PREFIX = "backbone."  # full fine-tuning: the backbone's weights ride in the adapter file under this prefix


def write_adapter(llm, folder: str, full: bool = False) -> None:
    """``adapter_config.json`` and ``adapter_model.safetensors`` of ``llm`` (a peft model) into ``folder``; with
    ``full`` (every weight trained) the backbone's weights join the adapter's in the same file (peft ignores them)."""
    llm.save_pretrained(folder, save_embedding_layers=False)
    if full:
        path = os.path.join(folder, "adapter_model.safetensors")
        tensors = load_file(path)
        for name, param in llm.get_base_model().named_parameters():  # tied weights appear once
            if "lora_" not in name:
                tensors[BACKBONE_PREFIX + name] = param.detach().cpu().contiguous()
        save_file(tensors, path)


def load_backbone_weights(llm, weights: dict) -> tuple[dict, list[str]]:
    """Put the ``backbone.*`` weights of a fully fine-tuned checkpoint into ``llm``'s base model; returns the rest
    (the adapter's) and the backbone names the model has no place for."""
    backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in weights.items() if k.startswith(BACKBONE_PREFIX)}
    if not backbone:
        return weights, []
    result = llm.get_base_model().load_state_dict(backbone, strict=False)
    return {k: v for k, v in weights.items() if not k.startswith(BACKBONE_PREFIX)}, list(result.unexpected_keys)


def load_adapter_weights(llm, weights: dict) -> list[str]:
    """Put adapter ``weights`` (as :func:`safetensors.torch.load_file` read them) into ``llm``; returns the names
    of weights the model has no place for (a checkpoint of another backbone or LoRA setting)."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(llm, weights)
    return list(getattr(result, "unexpected_keys", []))
