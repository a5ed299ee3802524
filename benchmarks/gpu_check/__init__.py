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

# what tests and other scripts use, from wherever it lives in the package
from .backbones import copy_lora, grad_agreement, load_tokenizer, loss_and_grads, set_lora
from .checks import check_beam_search
from .environment import hide, install_wheels, prepare_environment, present, too_new
from .run import main
from .settings import TOKENIZER_DIR, TOL

__all__ = ["TOKENIZER_DIR", "TOL", "check_beam_search", "copy_lora", "grad_agreement", "hide", "install_wheels",
           "load_tokenizer", "loss_and_grads", "main", "prepare_environment", "present", "set_lora", "too_new"]
