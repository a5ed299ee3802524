"""The LoRA adapter on disk: written and read through peft, so the folder loads with ``PeftModel.from_pretrained``."""

from __future__ import annotations


def write_adapter(llm, folder: str) -> None:
    """``adapter_config.json`` and ``adapter_model.safetensors`` of ``llm`` (a peft model) into ``folder``."""
    llm.save_pretrained(folder, save_embedding_layers=False)


def load_adapter_weights(llm, weights: dict) -> list[str]:
    """Put adapter ``weights`` (as :func:`safetensors.torch.load_file` read them) into ``llm``; returns the names
    of weights the model has no place for (a checkpoint of another backbone or LoRA setting)."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(llm, weights)
    return list(getattr(result, "unexpected_keys", []))
