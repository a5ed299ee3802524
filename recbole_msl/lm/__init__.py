"""Everything that knows transformers and peft: loading the backbone with LoRA, prompts as token ids, the
LM head, the common-prefix forward used in training, and the KV-cache layouts beam search runs on."""
