"""``python -m benchmarks.gpu_check [--device=cuda|cpu] [--sizes=tiny,135m,1b] [--out=FILE.json] [--wheels=DIR]``:
the GPU path, exercised in one command.

Offline by design: every backbone is a Llama built here from a config with random weights (``tiny``, the
SmolLM2-135M shape, a ~1B Llama shape), saved to a temporary folder with the SmolLM2 tokenizer of
``benchmarks/assets/smollm2-tokenizer`` and loaded through the plugin (``llm_path=<folder>``), so the
real loading code runs; weights are stored in bf16, so the fp32 and the bf16 runs see identical weights.

Checks (one ``PASS`` / ``FAIL`` / ``SKIP`` line each, per size, with the figures and the tolerance used):
  1. bf16 MSL and LML losses, the ATS estimate and the LoRA gradients agree with fp32 (same weights, batch);
  2. constrained beam search in bf16 returns the items of fp32 exhaustive scoring (10 titles, 10 beams),
     in the same order up to near-ties, with scores within a tolerance (and the fp32 search exactly);
  3. the one-prompt-per-user beam attention equals SDPA on full rows, fp32 and bf16, at the size's head shapes;
  4. ``gradient_checkpointing: True`` gives the plain path's loss and LoRA gradients (fp32);
  5. a tiny ``recbole_msl.run`` on ml-100k (train + full-sort evaluation through RecBole's loaders, the
     model in its automatic dtype: bf16 on CUDA) ends with finite metrics and a saved, trained adapter.
Measures (the table at the end and the JSON): train-step tokens/s and model-FLOPs utilisation against the
matmul peak of the same run (bf16 on CUDA, fp32 on CPU), ours vs the reference-style step of
``benchmarks/reference.py``; ranking users/s, ours vs Hugging Face's constrained ``generate``; the peak
memory of each (CUDA: ``max_memory_allocated``). Each measure is a line too: it fails if it crashes or if
ours and the reference disagree beyond the tolerance of its dtype.

Missing packages: RecBole (and the light packages it imports) may be absent on a GPU image, and its pandas
may be 3.x, which RecBole 1.2.1 breaks on. With ``--wheels=DIR`` (``make gpu-wheels``) the missing or unusable
ones are installed from DIR into a temporary folder put first on sys.path (``pip install --no-index --no-deps
--find-links DIR --target ...``); whatever is still missing is reported and the checks that need it print
SKIP with the reason. Checks 2 and 3 need only transformers: without
RecBole they import the plugin's ``core`` and ``lm`` modules without the package's ``__init__`` (which
imports RecBole). Without the tensorboard package RecBole's ``SummaryWriter`` is replaced, in this process
only, by a stub that writes nothing. ``--hide=PKG,...`` pretends packages are absent, to rehearse these paths.

Exit code 0 only when no line says FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import types

import torch

from .__main__ import table
from .common import PeakMemory, log, machine, median, memory_kind, sync, write_json
from .fixture import PROMPT_HISTORY, base_overrides, training_batch, valid_users

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "smollm2-tokenizer")

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

# ------------------------------------------------------------------ packages
# import name -> distribution name, per group of checks
NEEDS_LM = {"transformers": "transformers", "yaml": "pyyaml", "numpy": "numpy"}
NEEDS_RECBOLE = {**NEEDS_LM, "peft": "peft", "safetensors": "safetensors", "recbole": "recbole",
                 "colorlog": "colorlog", "colorama": "colorama", "texttable": "texttable", "pandas": "pandas",
                 "pytz": "pytz", "tzdata": "tzdata", "scipy": "scipy", "sklearn": "scikit-learn", "tqdm": "tqdm",
                 "psutil": "psutil"}
# versions that are installed but break RecBole 1.2.1 (recbole_msl/recbole_seam/compat.py): module -> (first bad major, why)
TOO_NEW = {"pandas": (3, "RecBole 1.2.1 needs pandas<3 (recbole_msl/recbole_seam/compat.py)")}
NEEDS = {"1": NEEDS_RECBOLE, "2": NEEDS_LM, "3": NEEDS_LM, "4": NEEDS_RECBOLE, "5": NEEDS_RECBOLE,
         "M1": NEEDS_RECBOLE, "M2": NEEDS_RECBOLE}


_HIDDEN: set = set()


def hide(names) -> None:
    """``--hide``: these top-level packages import as if absent (``None`` in sys.modules: ``import`` raises
    ModuleNotFoundError and ``importlib.util.find_spec`` answers None, as other libraries' probes expect)."""
    for name in names:
        sys.modules[name] = None
        _HIDDEN.add(name)


def _hidden() -> set:
    return set(_HIDDEN)


def present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def install_wheels(folder: str, distributions: list[str]) -> tuple[list[str], str]:
    """pip-install the ``distributions`` that have a wheel in ``folder`` into a new temporary folder put first on
    sys.path (no index, no dependencies: the folder holds exactly what is meant to be installed)."""
    wheels = {_norm(f.split("-")[0]) for f in os.listdir(folder) if f.endswith(".whl")}
    wanted = [d for d in distributions if _norm(d) in wheels]
    if not wanted:
        return [], ""
    site = tempfile.mkdtemp(prefix="gpu-check-site-")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--find-links", folder, "--target", site, *wanted]
    log(f"installing {', '.join(wanted)} from {folder}")
    subprocess.run(command, check=True)
    sys.path.insert(0, site)
    importlib.invalidate_caches()
    return wanted, site


class _NoSummaryWriter:
    """Stands in for torch's SummaryWriter when tensorboard is not installed: every call does nothing."""

    def __init__(self, log_dir=None, *args, **kwargs):
        self.log_dir = log_dir

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def install_tensorboard_stub() -> None:
    """``torch.utils.tensorboard`` (imported by RecBole's utils) with the stub writer, in this process only."""
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = _NoSummaryWriter
    module.__doc__ = "gpu_check's stand-in: tensorboard is not installed, nothing is written"
    sys.modules["torch.utils.tensorboard"] = module
    torch.utils.tensorboard = module


def _import_plugin_without_recbole() -> None:
    """Make ``recbole_msl.core`` and ``recbole_msl.lm`` importable without the package ``__init__``
    (which imports RecBole); only the RecBole-free checks run in such a process."""
    if "recbole_msl" in sys.modules:
        return
    package = types.ModuleType("recbole_msl")
    package.__path__ = [os.path.join(ROOT, "recbole_msl")]
    sys.modules["recbole_msl"] = package


def too_new(module: str, version: str | None = None) -> str | None:
    """Why the installed ``module`` cannot serve (a version RecBole breaks on), or None."""
    from importlib import metadata

    if module not in TOO_NEW:
        return None
    if version is None:
        try:
            version = metadata.version(NEEDS_RECBOLE[module])
        except metadata.PackageNotFoundError:
            return None
    major = int("".join(c for c in version.split(".")[0] if c.isdigit()) or 0)
    limit, why = TOO_NEW[module]
    return f"{version} installed; {why}" if major >= limit else None


def _unusable(modules: dict) -> dict:
    """module -> reason, for the modules that are missing or in a version RecBole breaks on."""
    out = {}
    for module in modules:
        if not present(module):
            out[module] = "not installed"
        elif too_new(module):
            out[module] = too_new(module)
    return out


def prepare_environment(wheels: str | None) -> dict:
    """Find missing packages, install what ``wheels`` holds, stub tensorboard; return what happened."""
    needed = {**NEEDS_LM, **NEEDS_RECBOLE}
    unusable = _unusable(needed)
    installed, site = [], ""
    if unusable and wheels:
        if not os.path.isdir(wheels):
            log(f"--wheels={wheels} is not a folder; nothing installed (make gpu-wheels fills build/gpu-wheels)")
        else:
            try:
                installed, site = install_wheels(wheels, [needed[m] for m in unusable])
            except (subprocess.CalledProcessError, OSError) as err:
                log(f"installing from {wheels} failed: {err}")
            unusable = _unusable(needed)
    stub = not present("tensorboard")
    if stub and "torch.utils.tensorboard" not in sys.modules:
        install_tensorboard_stub()
        log("tensorboard is not installed: RecBole's SummaryWriter is a stub in this process (no event files)")
    recbole_ok = not any(m in unusable for m in NEEDS_RECBOLE)
    if recbole_ok:
        import recbole_msl  # noqa: F401  (numpy aliases for RecBole, before any RecBole module runs)
    elif all(m not in unusable for m in NEEDS_LM):
        _import_plugin_without_recbole()
    for module, why in unusable.items():
        log(f"unusable package: {needed[module]} ({why})")
    return {"unusable": {needed[m]: why for m, why in unusable.items()}, "unusable_modules": sorted(unusable),
            "installed_from_wheels": installed, "site": site, "tensorboard_stub": stub, "recbole": recbole_ok,
            "hidden": sorted(_hidden()), "versions": _versions()}


def _versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("torch", "transformers", "peft", "recbole", "numpy", "pandas", "scikit-learn", "tensorboard"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ------------------------------------------------------------------- report
class Report:
    """The PASS/FAIL/SKIP lines, the measures and the time of each section."""

    def __init__(self):
        self.checks: list[dict] = []
        self.measures: dict = {}
        self.sections: dict = {}

    def add(self, check: str, size: str, status: str, detail: str, figures: dict | None = None,
            tolerance: dict | None = None):
        self.checks.append({"check": check, "name": CHECK_NAMES[check], "size": size, "status": status,
                            "detail": detail, "figures": figures or {}, "tolerance": tolerance or {}})
        print(f"{status:<4}  [{check}] {CHECK_NAMES[check]} ({size}): {detail}", flush=True)

    def skip_missing(self, check: str, size: str, env: dict) -> bool:
        """SKIP (with the reason) when a package ``check`` needs is missing or unusable; True if skipped."""
        absent = [f"{dist} ({env['unusable'][dist]})" for module, dist in NEEDS[check].items()
                  if module in env["unusable_modules"]]
        if absent:
            self.add(check, size, "SKIP", f"needs {', '.join(absent)}; --wheels=build/gpu-wheels (make gpu-wheels) "
                                          f"installs RecBole, its light deps and pandas<3")
        return bool(absent)

    def run(self, check: str, size: str, fn, *args, **kwargs):
        """Run a check function returning (ok, detail, figures, tolerance); an exception is a FAIL."""
        try:
            ok, detail, figures, tolerance = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - a crash on the device is this check's failure, the others go on
            traceback.print_exc()
            self.add(check, size, "FAIL", f"{type(err).__name__}: {err}"[:400])
            return None
        self.add(check, size, "PASS" if ok else "FAIL", detail, figures, tolerance)
        return figures

    @contextlib.contextmanager
    def section(self, name: str):
        log(f"-- {name}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sections[name] = time.perf_counter() - start
            log(f"-- {name}: {self.sections[name]:.1f} s")

    def counts(self) -> dict:
        return {s: sum(c["status"] == s for c in self.checks) for s in ("PASS", "FAIL", "SKIP")}


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


# ------------------------------------------------------------------- check 1
def check_bf16_losses(m32, m16, batch):
    """MSL (with its ATS statistics) and LML losses and LoRA gradients, bf16 against fp32."""
    figures, ok, parts, plain = {}, True, [], {}
    for loss in ("msl", "lml"):
        l32, g32, ats32 = loss_and_grads(m32, batch, loss)
        l16, g16, ats16 = loss_and_grads(m16, batch, loss)
        agree = grad_agreement(g32, g16)
        f = {"loss_fp32": l32, "loss_bf16": l16, "loss_rel": abs(l16 - l32) / abs(l32), **agree}
        good = (f["loss_rel"] <= TOL["loss_rel"] and agree["cos"] >= TOL["grad_cos"]
                and agree["norm_rel"] <= TOL["grad_norm_rel"] and agree["norm"] > 0)
        text = (f"{loss} loss {l32:.4f}/{l16:.4f} rel {_e(f['loss_rel'])}, grad cos {agree['cos']:.5f} "
                f"(min tensor {agree['min_tensor_cos']:.4f}), norm rel {_e(agree['norm_rel'])}")
        if loss == "msl":
            raw32, raw16 = ats32.get("tau_hat_raw", math.nan), ats16.get("tau_hat_raw", math.nan)
            f.update(tau_hat_raw_fp32=raw32, tau_hat_raw_bf16=raw16, tau_hat_abs=abs(raw16 - raw32),
                     ats_delta_fp32=ats32.get("delta"), ats_delta_bf16=ats16.get("delta"),
                     ats_var_fp32=ats32.get("var"), ats_var_bf16=ats16.get("var"))
            good = good and f["tau_hat_abs"] <= TOL["tau_hat_abs"]
            text += f", ATS tau_hat {raw32:.4f}/{raw16:.4f} diff {_e(f['tau_hat_abs'])}"
        figures[loss], ok = f, ok and good
        parts.append(text)
        plain[loss] = (l32, g32)
    tolerance = {k: TOL[k] for k in ("loss_rel", "tau_hat_abs", "grad_cos", "grad_norm_rel")}
    detail = "; ".join(parts) + (f" (tol: loss rel <= {TOL['loss_rel']}, tau_hat diff <= {TOL['tau_hat_abs']}, "
                                 f"cos >= {TOL['grad_cos']}, norm rel <= {TOL['grad_norm_rel']})")
    figures["_plain"] = plain  # kept for check 4, dropped from the JSON
    return ok, detail, figures, tolerance


# ------------------------------------------------------------------- check 2
def catalogue_setting(tokenizer, device):
    """(prompts of 3 users, the 10-title trie, responses of items 1..10) built by the plugin's PromptBuilder."""
    import yaml

    from recbole_msl.core.trie import TokenTrie
    from recbole_msl.lm.prompt import DEFAULT_TEMPLATE, PromptBuilder

    with open(os.path.join(ROOT, "properties", "model", "LLMMSL.yaml")) as f:
        defaults = yaml.safe_load(f)
    titles = [None, *CATALOGUE, *HISTORY]  # item 0 is RecBole's padding item
    builder = PromptBuilder(tokenizer, titles, DEFAULT_TEMPLATE, defaults["prompt_instruction"],
                            defaults["prompt_input"], 2048)
    first = 1 + len(CATALOGUE)
    histories = [list(range(first, first + 10)), [first + 2, first + 5, first + 7], [first + 1, first + 4, first + 9]]
    items = list(range(1, 1 + len(CATALOGUE)))
    responses = [builder.response(i) for i in items]
    trie = TokenTrie.build(responses, [[i] for i in items], len(titles)).to(device)
    return [builder.prompt(h) for h in histories], trie, responses


@torch.no_grad()
def exhaustive_scores(model, prompt: list[int], responses: list[list[int]], pad: int, length_penalty: float = 1.0):
    """Teacher-forced fp32 score of every title (full softmax, as the search with cbs_renormalize False)."""
    from recbole_msl.core.batching import pad_rows

    device = model.get_input_embeddings().weight.device
    ids, _ = pad_rows([prompt + r[:-1] for r in responses], pad, left=False, device=device)  # causal: right pad is inert
    keep = ids.size(1) - (len(prompt) - 1)  # logits at the response positions only
    logits = model(input_ids=ids, logits_to_keep=keep).logits.float()  # [titles, keep, V]
    out = []
    for row, response in zip(logits, responses):
        steps = row[:len(response)].log_softmax(-1)
        total = steps.gather(1, torch.tensor(response, device=device).unsqueeze(1)).sum()
        out.append(float(total) / len(response) ** length_penalty)
    return out


@torch.no_grad()
def beam_scores(model, prompts, trie, beams: int, pad: int):
    """{user: {item: score}} from the plugin's constrained beam search, the shared prefix run once (as LLMMSL.rank)."""
    from recbole_msl.core.batching import pad_rows
    from recbole_msl.core.beam_search import constrained_beam_search
    from recbole_msl.lm.cached_lm import CachedCausalLM
    from recbole_msl.lm.common_prefix import common_prefix_length

    device = model.get_input_embeddings().weight.device
    shared = common_prefix_length(prompts)
    ids, mask = pad_rows([p[shared:] for p in prompts], pad, left=True, device=device)
    lm = CachedCausalLM(model)
    scores, leaves = constrained_beam_search(lm, ids, mask, trie, beams, prefix=prompts[0][:shared])
    users = []
    for row_scores, row_leaves in zip(scores.tolist(), leaves.tolist()):
        found = {}
        for score, leaf in zip(row_scores, row_leaves):
            if leaf >= 0:
                for item in trie.items_of_leaves(torch.tensor([leaf], device=device))[0].tolist():
                    found[item] = score
        users.append(found)
    return users, lm.live_rows_only


def check_beam_search(base32, base16, tokenizer, device):
    """bf16 (and fp32) constrained beam search against fp32 exhaustive scoring on a 10-title catalogue."""
    prompts, trie, responses = catalogue_setting(tokenizer, device)
    pad = tokenizer.pad_token_id
    beams = len(CATALOGUE)
    items = list(range(1, 1 + beams))
    exact = [dict(zip(items, exhaustive_scores(base32, p, responses, pad))) for p in prompts]
    found16, shared_layout = beam_scores(base16, prompts, trie, beams, pad)
    found32, _ = beam_scores(base32, prompts, trie, beams, pad)
    users, ok = [], True
    for u, (ref, got16, got32) in enumerate(zip(exact, found16, found32)):
        same_set = set(got16) == set(ref) and set(got32) == set(ref)
        diff16 = max((abs(got16[i] - ref[i]) for i in ref if i in got16), default=math.inf)
        diff32 = max((abs(got32[i] - ref[i]) for i in ref if i in got32), default=math.inf)
        order_ref = sorted(ref, key=lambda i: -ref[i])
        order16 = sorted(got16, key=lambda i: -got16[i])
        rank_agree = sum(a == b for a, b in zip(order_ref, order16))
        swaps = [abs(ref[a] - ref[b]) for x, a in enumerate(order16) for b in order16[x + 1:]
                 if a in ref and b in ref and ref[b] > ref[a]]  # pairs bf16 puts the other way round
        worst_swap = max(swaps, default=0.0)
        good = (same_set and diff16 <= TOL["beam_bf16"] and diff32 <= TOL["beam_fp32"]
                and worst_swap <= TOL["swap_gap"])
        ok = ok and good
        users.append({"user": u, "prompt_tokens": len(prompts[u]), "same_set": same_set,
                      "rank_agreement": rank_agree, "swapped_pairs": len(swaps), "largest_swapped_gap_fp32": worst_swap,
                      "max_score_diff_bf16": diff16, "max_score_diff_fp32_search": diff32,
                      "fp32_top_gap": ref[order_ref[0]] - ref[order_ref[1]], "ok": good})
    figures = {"users": users, "titles": beams, "beams": beams, "one_prompt_per_user_layout": shared_layout}
    tolerance = {k: TOL[k] for k in ("beam_bf16", "beam_fp32", "swap_gap")}
    detail = (f"{len(users)} users x {beams} titles, {beams} beams: same top-{beams} set "
              f"{sum(u['same_set'] for u in users)}/{len(users)}, rank agreement "
              f"{sum(u['rank_agreement'] for u in users)}/{beams * len(users)} positions, "
              f"{sum(u['swapped_pairs'] for u in users)} swapped pairs (largest fp32 gap "
              f"{max(u['largest_swapped_gap_fp32'] for u in users):.3g}), max |bf16 - fp32| "
              f"{max(u['max_score_diff_bf16'] for u in users):.3g}, fp32 search max diff "
              f"{_e(max(u['max_score_diff_fp32_search'] for u in users))} (tol: bf16 {TOL['beam_bf16']}, "
              f"fp32 {TOL['beam_fp32']}, swaps only within fp32 gap {TOL['swap_gap']})")
    return ok, detail, figures, tolerance


# ------------------------------------------------------------------- check 3
def attention_case(device, dtype, heads: int, kv_heads: int, dim: int, rows_per_user: int, seed: int = 0):
    """Max |ours - SDPA| and the worst |diff| / (1 + |SDPA|), as tests/test_beam_attention.py sets it up."""
    import torch.nn.functional as F

    from recbole_msl.lm.beam_attention import UserPromptState, user_prompt_attention

    generator = torch.Generator().manual_seed(seed)
    users, prompt, generated, rep = 6, 160, 7, heads // kv_heads
    rows = users * rows_per_user

    def rand(*shape):
        return torch.randn(shape, generator=generator).to(device, dtype)

    prompt_keys, prompt_values = rand(users, kv_heads, prompt, dim), rand(users, kv_heads, prompt, dim)
    visible = torch.ones(users, prompt, dtype=torch.bool)
    for u in range(users):
        visible[u, :(u * 17) % 50] = False  # left padding of different widths
    visible = visible.to(device)
    own_keys, own_values = rand(rows, kv_heads, generated, dim), rand(rows, kv_heads, generated, dim)
    query = rand(rows, heads, 1, dim)
    layer = types.SimpleNamespace(prompt_keys=prompt_keys, prompt_values=prompt_values,
                                  prompt_visible=visible[:, None, None, :])
    state = UserPromptState([layer])
    state.rows_per_user = rows_per_user
    out, _ = user_prompt_attention(types.SimpleNamespace(layer_idx=0), query, own_keys, own_values, None,
                                   scaling=dim ** -0.5, user_prompts=state)
    owner = torch.arange(rows, device=device) // rows_per_user
    keys = torch.cat([prompt_keys[owner], own_keys], 2).float().repeat_interleave(rep, 1)
    values = torch.cat([prompt_values[owner], own_values], 2).float().repeat_interleave(rep, 1)
    mask = torch.cat([visible[owner], torch.ones(rows, generated, dtype=torch.bool, device=device)], 1)
    expected = F.scaled_dot_product_attention(query.float(), keys, values, attn_mask=mask[:, None, None, :])
    expected = expected.transpose(1, 2)
    diff = (out.float() - expected).abs()
    assert out.shape == (rows, 1, heads, dim) and out.dtype == dtype
    return float(diff.max()), float((diff / (1 + expected.abs())).max())


def check_attention(device, dtype, size: str):
    spec = SIZES[size]
    heads, kv_heads = spec["num_attention_heads"], spec["num_key_value_heads"]
    dim = spec["hidden_size"] // heads
    tol = TOL["attn_fp32" if dtype == torch.float32 else "attn_bf16"]
    cases = {m: attention_case(device, dtype, heads, kv_heads, dim, m) for m in (1, 4, 10)}
    worst = max(c[1] for c in cases.values())
    figures = {"heads": heads, "kv_heads": kv_heads, "head_dim": dim, "prompt": 160, "generated": 7, "users": 6,
               "dtype": str(dtype), "max_abs_diff": {str(m): c[0] for m, c in cases.items()},
               "max_scaled_diff": worst}
    detail = (f"{str(dtype).replace('torch.', '')}, {heads}/{kv_heads} heads x {dim}, 6 users x 160 prompt tokens, "
              f"rows per user 1/4/10: max |diff| {_e(max(c[0] for c in cases.values()))}, max |diff|/(1+|sdpa|) "
              f"{_e(worst)} (tol atol=rtol={tol})")
    return worst <= tol, detail, figures, {"atol": tol, "rtol": tol}


# ------------------------------------------------------------------- check 4
def check_checkpointing(model_ckpt, plain: dict, batch):
    """Loss and LoRA gradients under gradient checkpointing equal those of the plain fp32 path (check 1's)."""
    base = model_ckpt.base
    base.train()
    active = bool(getattr(base, "is_gradient_checkpointing", False))
    figures, ok, parts = {"checkpointing_active": active}, active, []
    for loss in ("msl", "lml"):
        l_plain, g_plain = plain[loss]
        l_ckpt, g_ckpt, _ = loss_and_grads(model_ckpt, batch, loss)
        agree = grad_agreement(g_plain, g_ckpt)
        rel = abs(l_ckpt - l_plain) / abs(l_plain)
        figures[loss] = {"loss_plain": l_plain, "loss_checkpointed": l_ckpt, "loss_rel": rel, **agree}
        ok = ok and rel <= TOL["gc_loss_rel"] and agree["err_rel"] <= TOL["gc_grad_rel"]
        parts.append(f"{loss} loss rel {_e(rel)}, grad err rel {_e(agree['err_rel'])}, cos {agree['cos']:.7f}")
    detail = (f"checkpointing {'on' if active else 'NOT ON'}; " + "; ".join(parts)
              + f" (tol: loss rel <= {TOL['gc_loss_rel']}, grad err rel <= {TOL['gc_grad_rel']})")
    return ok, detail, figures, {k: TOL[k] for k in ("gc_loss_rel", "gc_grad_rel")}


# ------------------------------------------------------------------- check 5
def check_end_to_end(folder: str, device_kind: str, workdir: str):
    """recbole_msl.run on ml-100k with this backbone: finite metrics, a saved adapter that moved."""
    from safetensors.torch import load_file

    import recbole_msl

    overrides = {"llm_path": folder, "epochs": 1, "num_beams": 10, "show_progress": False, "show_examples": 0,
                 "checkpoint_dir": os.path.join(workdir, "saved"), "log_wandb": False, "state": "WARNING",
                 "learning_rate": 1e-3, **PLANS[device_kind]["e2e"]}
    if device_kind == "cpu":
        overrides.update(gpu_id="", use_gpu=False)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = recbole_msl.run("LLMMSL", "ml-100k", config_dict=overrides)
    metrics = {f"valid {k}": v for k, v in (result["best_valid_result"] or {}).items()}
    metrics.update({f"test {k}": v for k, v in (result["test_result"] or {}).items()})
    saved = result.get("saved_model_file") or ""
    files = sorted(os.listdir(saved)) if os.path.isdir(saved) else []
    needed = {"adapter_config.json", "adapter_model.safetensors", "msl_state.json"}
    tensors = load_file(os.path.join(saved, "adapter_model.safetensors")) if "adapter_model.safetensors" in files else {}
    finite_adapter = bool(tensors) and all(bool(torch.isfinite(t).all()) for t in tensors.values())
    trained = any(float(t.abs().max()) > 0 for n, t in tensors.items() if "lora_B" in n)  # B starts at zero
    peak = torch.cuda.max_memory_allocated() if cuda else None
    figures = {"metrics": metrics, "saved": saved, "files": files, "timings": result.get("timings"),
               "adapter_tensors": len(tensors), "adapter_finite": finite_adapter, "adapter_trained": trained,
               "cuda_peak_bytes": peak, "overrides": {k: v for k, v in overrides.items() if k != "llm_path"}}
    ok = (bool(metrics) and all(math.isfinite(v) for v in metrics.values()) and needed <= set(files)
          and finite_adapter and trained and (not cuda or device_kind != "cuda" or peak > 0))
    t = result.get("timings") or {}
    detail = (f"{len(metrics)} metrics finite: {all(math.isfinite(v) for v in metrics.values())} (test ndcg@10 "
              f"{metrics.get('test ndcg@10', math.nan):.4f}, hit@10 {metrics.get('test hit@10', math.nan):.4f}), "
              f"adapter saved with {', '.join(sorted(needed & set(files)))}, {len(tensors)} tensors finite "
              f"{finite_adapter}, lora_B moved {trained}; fit {t.get('fit_s', math.nan):.1f} s, test "
              f"{t.get('test_s', math.nan):.1f} s" + (f", cuda peak {peak / 2 ** 20:.0f} MiB" if peak else ""))
    return ok, detail, figures, {}


# ------------------------------------------------------------------ measures
def measure_train_step(model, batch, repeats: int, peak_gflops: float, loss_tol: float):
    """train_step.compare with a dtype-aware equality check: timed steps in pairs, peak memory, MFU."""
    from .flops import batch_shape, step_flops
    from .reference import DictTrie, ReferenceStep, build_masks
    from .train_step import NoDropout, _step, our_loss, timed_pairs

    base = model.base
    vocab = base.get_output_embeddings().out_features
    masks = build_masks(model, batch, DictTrie(model.prompts.sequences()[0]), vocab)
    reference = ReferenceStep(model, masks)
    model.train()
    tau0 = model.tau
    with NoDropout(model):
        ours_loss = float(our_loss(model, batch).detach())
        model.end_ats_step()
        model.tau = reference.tau = tau0
        ref_loss = float(reference.loss(batch).detach())
        reference.end_step()
    model.tau = reference.tau = tau0
    rel = abs(ours_loss - ref_loss) / abs(ref_loss)

    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    steps = {"ours": lambda: _step(optimizer, lambda: our_loss(model, batch), model.end_ats_step),
             "reference": lambda: _step(optimizer, lambda: reference.loss(batch), reference.end_step)}
    times = timed_pairs(steps, repeats)
    memory = {}
    for name, fn in steps.items():
        with PeakMemory() as mem:
            fn()
            sync()
        memory[name] = (mem.peak, mem.delta)
    model.eval()
    model.tau = tau0
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    model.zero_grad(set_to_none=True)

    shape = batch_shape(model, batch)
    out = {"dtype": str(next(base.parameters()).dtype), **shape, "loss_ours": ours_loss, "loss_reference": ref_loss,
           "loss_rel": rel, "loss_tolerance": loss_tol, "repeats": repeats, "memory_kind": memory_kind(),
           "peak_gflops": peak_gflops}
    for name in steps:
        t = median(times[name])
        flops = step_flops(base, shape, ours=name == "ours")
        out[name] = {"step_s_median": t, "step_s_all": times[name], "tokens_per_s": shape["real_tokens"] / t,
                     "step_gflop": flops / 1e9, "mfu": flops / t / 1e9 / peak_gflops,
                     "executed_fraction_of_peak": step_flops(base, shape, ours=name == "ours", executed=True)
                     / t / 1e9 / peak_gflops,
                     "peak_memory_bytes": memory[name][0], "peak_memory_above_start_bytes": memory[name][1]}
    out["speedup_tokens_per_s"] = out["ours"]["tokens_per_s"] / out["reference"]["tokens_per_s"]
    ok = rel <= loss_tol
    detail = (f"{shape['samples']} x ~{shape['real_tokens'] // shape['samples']} tokens, {out['dtype'][6:]}: ours "
              f"{out['ours']['tokens_per_s']:,.0f} tok/s (MFU {100 * out['ours']['mfu']:.1f}%), reference "
              f"{out['reference']['tokens_per_s']:,.0f} tok/s ({100 * out['reference']['mfu']:.1f}%), "
              f"{out['speedup_tokens_per_s']:.2f}x; losses agree: rel {_e(rel)} (tol {loss_tol})")
    return ok, detail, out, {"loss_rel": loss_tol}


def measure_ranking(model, valid, users: int, exact: bool):
    """Users/s of full_sort_predict vs Hugging Face's constrained generate on the same users; agreement reported
    (asserted in fp32, where both must return the same titles and scores)."""
    from .hf_generate import hf_rank
    from .ranking import compare_users, our_titles
    from .reference import DictTrie

    batch = valid_users(valid, users)
    model.eval()
    dict_trie = DictTrie(model.prompts.sequences()[0])
    beams = model.opts.num_beams

    def ours(rows):
        return model.full_sort_predict(rows)

    def hf(rows):
        ids, mask = model.pad([model.prompts.prompt(h) for h in model._histories(rows)], left=True)
        return hf_rank(model.base, ids, mask, dict_trie, beams, model.trie.max_depth, model.opts.length_penalty)

    out = {"users": len(batch), "num_beams": beams, "decode_batch_size": model.opts.decode_batch_size,
           "titles": model.trie.num_leaves, "memory_kind": memory_kind()}
    results = {}
    with torch.no_grad():
        for name, fn in (("ours", ours), ("hf", hf)):
            if torch.cuda.is_available():
                fn(batch[:1])  # warm-up (kernels, cuBLAS handles, allocator)
            with PeakMemory() as mem:
                sync()
                start = time.perf_counter()
                results[name] = fn(batch)
                sync()
                elapsed = time.perf_counter() - start
            out[name] = {"s": elapsed, "users_per_s": len(batch) / elapsed, "peak_memory_bytes": mem.peak,
                         "peak_memory_above_start_bytes": mem.delta}
    records = compare_users(our_titles(model, results["ours"]), results["hf"], TOL["rank_score_fp32"])
    out["identical_users"] = sum(r["same"] for r in records)
    out["same_titles_users"] = sum(r["same_titles"] for r in records)
    out["max_score_diff"] = max(r["max_score_diff"] for r in records)
    out["speedup"] = out["ours"]["users_per_s"] / out["hf"]["users_per_s"]
    ok = not exact or out["identical_users"] == len(batch)
    detail = (f"{len(batch)} users, {beams} beams, {out['titles']} titles: ours {out['ours']['users_per_s']:.2f} users/s, "
              f"HF generate {out['hf']['users_per_s']:.2f} users/s, {out['speedup']:.2f}x; same titles for "
              f"{out['same_titles_users']}/{len(batch)} users, max score diff {out['max_score_diff']:.2g}"
              + (f" (fp32: identical required, tol {TOL['rank_score_fp32']})" if exact
                 else " (bf16: reported, not asserted; check 2 asserts bf16 ranking)"))
    return ok, detail, out, {"rank_score_fp32": TOL["rank_score_fp32"]} if exact else {}


# ---------------------------------------------------------------- the run
class Setting:
    """What every size shares: device, plan, RecBole's ml-100k loaders, the overrides of every model."""

    def __init__(self, device_kind: str, workdir: str, tokenizer, env: dict):
        self.kind, self.workdir, self.tokenizer, self.env = device_kind, workdir, tokenizer, env
        self.device = torch.device(device_kind)
        self.plan = PLANS[device_kind]
        self.train = self.valid = None

    def overrides(self) -> dict:

        over = base_overrides(None)
        over.update(lora_dropout=0.0, train_batch_size=max(self.plan["step_batch"], self.plan["check_batch"]),
                    decode_batch_size=self.plan["decode_batch"], checkpoint_dir=os.path.join(self.workdir, "saved"))
        if self.kind == "cpu":
            over.update(gpu_id="", use_gpu=False)
        return over

    def load_data(self, folder: str):
        from recbole.utils import init_seed

        from recbole_msl.recbole_seam.config import Config
        from recbole_msl.recbole_seam.data import create_dataset, data_preparation

        config = Config(model="LLMMSL", dataset="ml-100k", config_dict={**self.overrides(), "llm_path": folder})
        init_seed(config["seed"], config["reproducibility"])
        self.train, self.valid, _ = data_preparation(config, create_dataset(config))

    def model(self, folder: str, **extra):
        from recbole_msl.model.llmmsl import LLMMSL
        from recbole_msl.recbole_seam.config import Config

        config = Config(model="LLMMSL", dataset="ml-100k", config_dict={**self.overrides(), "llm_path": folder, **extra})
        torch.manual_seed(0)
        model = LLMMSL(config, self.train._dataset).to(config["device"])
        model.opts.history_length = PROMPT_HISTORY  # the CPU profile's prompt, as the other benchmarks use
        model.eval()
        return model


def run_size(size: str, setting: Setting, report: Report, folder: str):
    """Checks 1-4 and the measures for one backbone size."""
    env, device, plan = setting.env, setting.device, setting.plan
    for dtype in (torch.float32, torch.bfloat16):  # check 3 needs no model
        if not report.skip_missing("3", size, env):
            report.run("3", size, check_attention, device, dtype, size)
    if not env["recbole"]:
        for check in ("1", "4", "M1", "M2"):
            report.skip_missing(check, size, env)
        if report.skip_missing("2", size, env):
            return
        from recbole_msl.lm.backbone import load_backbone
        from recbole_msl.lm.options import BackboneOptions

        def backbone(dtype):
            config = {"llm_path": folder, "llm_dtype": dtype, "llm_load_in_bits": None, "trust_remote_code": False,
                      "show_progress": False}
            return load_backbone(BackboneOptions.from_mapping(config), device)[0].eval()

        with report.section(f"{size}: check 2 (backbones through load_backbone, no RecBole)"):
            b32, b16 = backbone("float32"), backbone("bfloat16")
            report.run("2", size, check_beam_search, b32, b16, setting.tokenizer, device)
        del b32, b16
        _free()
        return

    with report.section(f"{size}: load fp32 and bf16 models"):
        if setting.train is None:
            setting.load_data(folder)
        m32 = setting.model(folder, llm_dtype="float32")
        m16 = setting.model(folder, llm_dtype="bfloat16")
        set_lora(m32)
        copy_lora(m32, m16)
    batch = training_batch(setting.train, plan["check_batch"])
    with report.section(f"{size}: checks 1-2"):
        figures = report.run("1", size, check_bf16_losses, m32, m16, batch)
        plain = figures.pop("_plain") if figures else None
        report.run("2", size, check_beam_search, m32.base, m16.base, setting.tokenizer, device)
    with report.section(f"{size}: check 4"):
        if plain is None:
            report.add("4", size, "SKIP", "check 1 crashed, so there are no plain-path gradients to compare with")
        else:
            ckpt = setting.model(folder, llm_dtype="float32", gradient_checkpointing=True)
            copy_lora(m32, ckpt)
            report.run("4", size, check_checkpointing, ckpt, plain, batch)
            del ckpt
            _free()
    # the measures run in the dtype llm_dtype: auto picks (bf16 on CUDA, fp32 on CPU)
    auto = m16 if setting.kind == "cuda" else m32
    del m32, m16
    _free()
    with report.section(f"{size}: measures"):
        from .peak import matmul_peak

        if "peak" not in report.measures:
            peak_size, repeats, dtype = plan["peak"]
            report.measures["peak"] = matmul_peak(peak_size, repeats, dtype)
        step_batch = training_batch(setting.train, plan["step_batch"])
        tol = TOL["step_loss_rel_fp32"] if setting.kind == "cpu" else TOL["loss_rel"]
        step = report.run("M1", size, measure_train_step, auto, step_batch, plan["step_repeats"],
                          report.measures["peak"]["best_gflops"], tol)
        ranking = report.run("M2", size, measure_ranking, auto, setting.valid, plan["rank_users"],
                             exact=setting.kind == "cpu")
        report.measures[size] = {"train_step": step, "ranking": ranking}
    del auto
    _free()


def summary_rows(report: Report) -> list[tuple]:
    rows, mib = [], 1 / 2 ** 20
    for size, m in report.measures.items():
        if size == "peak":
            continue
        step, rank = m.get("train_step"), m.get("ranking")
        if step:
            dt = step["dtype"].replace("torch.", "")
            rows += [(f"[{size}, {dt}] train step tok/s", step["ours"]["tokens_per_s"],
                      step["reference"]["tokens_per_s"], step["speedup_tokens_per_s"], "report", None),
                     (f"[{size}, {dt}] train step MFU %", 100 * step["ours"]["mfu"], 100 * step["reference"]["mfu"],
                      None, "report", None),
                     (f"[{size}, {dt}] train step peak MiB", step["ours"]["peak_memory_bytes"] * mib,
                      step["reference"]["peak_memory_bytes"] * mib, None, "report", None)]
        if rank:
            rows += [(f"[{size}] ranking users/s (ours vs HF generate)", rank["ours"]["users_per_s"],
                      rank["hf"]["users_per_s"], rank["speedup"], "report", None),
                     (f"[{size}] ranking peak MiB", rank["ours"]["peak_memory_bytes"] * mib,
                      rank["hf"]["peak_memory_bytes"] * mib, None, "report", None)]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[1])
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when present, else cpu")
    parser.add_argument("--sizes", help="comma-separated: tiny, 135m, 1b (default: cpu tiny; cuda tiny,135m,1b)")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/gpu_check_<device>.json)")
    parser.add_argument("--wheels", help="folder of wheels to install missing packages from (make gpu-wheels)")
    parser.add_argument("--e2e-size", help="backbone of check 5 (default: 135m on cuda if asked for, else the first)")
    parser.add_argument("--hide", default="", help="pretend these packages are absent (rehearse the SKIP paths)")
    args = parser.parse_args(argv)
    if args.device == "cpu":  # before anything asks CUDA, so every helper (sync, PeakMemory, matmul_peak) sees CPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        print("error: --device=cuda but torch sees no CUDA device; use --device=cpu", file=sys.stderr)
        return 2
    sizes = [s.strip().lower() for s in (args.sizes or ("tiny,135m,1b" if kind == "cuda" else "tiny")).split(",")]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    e2e_size = args.e2e_size or ("135m" if kind == "cuda" and "135m" in sizes else sizes[0])
    if e2e_size not in sizes:
        parser.error(f"--e2e-size={e2e_size} is not among --sizes")

    start = time.perf_counter()
    report = Report()
    hide([h.strip() for h in args.hide.split(",") if h.strip()])
    with report.section("environment"):
        env = prepare_environment(args.wheels)
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        info = machine()
        log(f"gpu_check on {kind} ({info.get('gpu') or info['cpu']}), sizes {', '.join(sizes)}, "
            f"torch {env['versions']['torch']}, transformers {env['versions']['transformers']}, "
            f"recbole {env['versions']['recbole']}; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}")
    workdir = tempfile.mkdtemp(prefix="gpu-check-")
    folders, backbones = {}, {}
    try:
        tokenizer = load_tokenizer()
        setting = Setting(kind, workdir, tokenizer, env)
        for size in sizes:
            with report.section(f"{size}: build backbone"):
                folders[size] = os.path.join(workdir, f"llama-{size}")
                backbones[size] = build_backbone(size, folders[size], setting.device, tokenizer)
                log(f"{size}: {backbones[size]['parameters'] / 1e6:.1f}M parameters saved to {folders[size]}")
            try:
                run_size(size, setting, report, folders[size])
            except Exception as err:  # noqa: BLE001 - a setup crash (loading) fails this size, the others go on
                traceback.print_exc()
                report.add("setup", size, "FAIL", f"setup of size {size} failed: {type(err).__name__}: {err}"[:400])
            _free()
        with report.section(f"check 5 ({e2e_size})"):
            if not report.skip_missing("5", e2e_size, env):
                report.run("5", e2e_size, check_end_to_end, folders[e2e_size], kind, workdir)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.perf_counter() - start
    rows = summary_rows(report)
    if rows:
        print()
        print(table(rows))
    counts = report.counts()
    print(f"\ngpu_check ({kind}): {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
          f"in {elapsed:.0f} s; sections: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.sections.items()))
    figures = {"device_kind": kind, "sizes": sizes, "e2e_size": e2e_size, "environment": env, "tolerances": TOL,
               "backbones": backbones, "checks": report.checks, "measures": report.measures,
               "sections_s": report.sections, "elapsed_s": elapsed, "counts": counts,
               "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"benchmark": "gpu_check", "machine": machine(), **figures}, f, indent=2, default=str)
            f.write("\n")
        path = args.out
    else:
        path = write_json(f"gpu_check_{kind}", json.loads(json.dumps(figures, default=str)))
    log(f"wrote {path}")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
