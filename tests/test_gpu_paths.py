"""The GPU path made testable without a GPU: the device check on CPU, bf16 numerics, dtype and device decisions.

``benchmarks/gpu_check/`` is the script a session lent a GPU runs; here it runs end to end on CPU, its
SKIP and install paths are rehearsed, and the properties it checks on CUDA are asserted on CPU with the tiny
random Llama (bf16 against fp32, gradient checkpointing against the plain path). The CUDA-only decisions
(bf16 by default, 4/8-bit loading, NCCL) are unit-tested with the device mocked.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the benchmarks package lives at the repo root

from benchmarks import gpu_check
from recbole_msl.core.losses import (
    ats_estimate,
    ats_positions,
    ats_statistics,
    lm_loss_terms,
    masked_softmax_loss_terms,
)
from recbole_msl.errors import ConfigError
from recbole_msl.recbole_seam.config import Config

# bf16 against fp32 on the tiny model (the device check states the same numbers for CUDA)
LOSS_REL, GRAD_COS, GRAD_NORM_REL = 2e-2, 0.99, 5e-2
TERM_ATOL, TERM_RTOL = 5e-2, 2e-2  # per-position MSL / LML terms
TAU_HAT_ABS = 5e-2  # ATS estimate, tau units
SCORE_ABS = gpu_check.TOL["beam_bf16"]  # length-normalised title scores (beam search, predict): 0.1 nats


def _check_env():
    """One thread: the tiny model's ops are small, and a second thread only waits when the machine is busy."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def _run_check(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=ROOT, env=_check_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _status_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("PASS ", "FAIL ", "SKIP "))]


# ------------------------------------------------------------ the device check itself, on CPU
@pytest.mark.slow
def test_gpu_check_passes_end_to_end_on_cpu(tmp_path):
    """The command of the README, on CPU: every check and measure passes and the JSON is written (~45 s)."""
    out = tmp_path / "gpu_check.json"
    proc = _run_check("--device=cpu", "--sizes=tiny", f"--out={out}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    lines = _status_lines(proc.stdout)
    assert all(line.startswith("PASS") for line in lines), lines  # every package is installed here: nothing skips
    data = json.loads(out.read_text())
    assert data["device_kind"] == "cpu" and data["counts"] == {"PASS": len(lines), "FAIL": 0, "SKIP": 0}
    assert {(c["check"], c["size"]) for c in data["checks"]} == {
        ("1", "tiny"), ("2", "tiny"), ("3", "tiny"), ("4", "tiny"), ("5", "tiny"), ("M1", "tiny"), ("M2", "tiny")}
    assert sum(c["check"] == "3" for c in data["checks"]) == 2  # fp32 and bf16
    step = data["measures"]["tiny"]["train_step"]
    assert step["ours"]["tokens_per_s"] > 0 and step["reference"]["tokens_per_s"] > 0 and 0 < step["ours"]["mfu"] < 1
    ranking = data["measures"]["tiny"]["ranking"]
    assert ranking["identical_users"] == ranking["users"]  # fp32: our top-10 is Hugging Face's
    assert data["measures"]["peak"]["best_gflops"] > 0
    assert data["tolerances"] == gpu_check.TOL and all(v > 0 for v in data["sections_s"].values())


def test_gpu_check_without_recbole_runs_the_checks_that_do_not_need_it(tmp_path):
    """RecBole missing and no wheels: checks 2 and 3 still run (plugin core/lm without its __init__), the others
    SKIP with the missing package named, and the exit code is 0."""
    out = tmp_path / "gpu_check.json"
    proc = _run_check("--device=cpu", "--sizes=tiny", "--hide=recbole", f"--out={out}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    status = {(c["check"], c["status"]) for c in json.loads(out.read_text())["checks"]}
    assert status == {("2", "PASS"), ("3", "PASS"), ("1", "SKIP"), ("4", "SKIP"), ("5", "SKIP"), ("M1", "SKIP"),
                      ("M2", "SKIP")}
    skips = [line for line in _status_lines(proc.stdout) if line.startswith("SKIP")]
    assert len(skips) == 5 and all("needs recbole (not installed)" in line for line in skips)
    assert "unusable package: recbole (not installed)" in proc.stdout


def test_tensorboard_stub_stands_in_for_recboles_summary_writer(tmp_path):
    """Without the tensorboard package RecBole's utils still import, and its writer accepts every call."""
    code = ("import logging; from benchmarks import gpu_check as g; g.hide(['tensorboard']); "
            "env = g.prepare_environment(None); from recbole.utils import get_tensorboard; "
            "w = get_tensorboard(logging.getLogger()); w.add_scalar('Loss/step', 1.0, 1); "
            "w.add_hparams({'lr': 1.0}, {'valid': 0.5}); w.close(); "
            "print(env['tensorboard_stub'], env['recbole'], type(w).__name__)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_check_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-3:] == ["True", "True", "_NoSummaryWriter"]
    assert not os.listdir(tmp_path)  # nothing written


def _wheel(folder, name="gpucheck_dummy", version="0.1") -> str:
    """A minimal pure-Python wheel (one module, VALUE = 42), as pip would build it."""
    dist_info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n"
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_missing_package_is_installed_from_the_wheels_folder(tmp_path):
    """--wheels: pip installs (no index, no deps) into a fresh folder put first on sys.path; only what DIR holds."""
    _wheel(tmp_path)
    assert not gpu_check.present("gpucheck_dummy")
    installed, site = gpu_check.install_wheels(str(tmp_path), ["gpucheck-dummy", "not-in-the-folder"])
    try:
        assert installed == ["gpucheck-dummy"] and gpu_check.present("gpucheck_dummy")
        import gpucheck_dummy

        assert gpucheck_dummy.VALUE == 42 and gpucheck_dummy.__file__.startswith(site)
    finally:
        sys.path.remove(site)
        sys.modules.pop("gpucheck_dummy", None)


def test_pandas_3_is_unusable_for_recbole_and_replaced_from_the_wheels():
    """The GPU image's pandas may be 3.x, which RecBole 1.2.1 breaks on: it then counts as missing."""
    assert gpu_check.too_new("pandas", "3.0.1") == "3.0.1 installed; RecBole 1.2.1 needs pandas<3 (recbole_msl/recbole_seam/compat.py)"
    assert gpu_check.too_new("pandas", "2.3.3") is None and gpu_check.too_new("numpy", "9.1") is None
    import pandas

    assert gpu_check.too_new("pandas") is None and int(pandas.__version__.split(".")[0]) < 3  # this venv: usable


def test_the_tokenizer_folder_is_the_default_backbones_tokenizer(smol_tokenizer):
    """benchmarks/assets/smollm2-tokenizer (what the check uses instead of the 98 MB GGUF) tokenizes alike."""
    folder = gpu_check.load_tokenizer()
    assert len(folder) == len(smol_tokenizer) == 49152
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(folder, attr) == getattr(smol_tokenizer, attr), attr
    texts = ['"Star Wars (1977)"', '"Twelve Monkeys (1995)", "Heat (1995)"', "### Instruction:\nGiven a list\n\n",
             '"Amélie (2001)" — naïve, 日本語']
    for text in texts:
        for special in (True, False):
            assert folder(text, add_special_tokens=special)["input_ids"] == \
                smol_tokenizer(text, add_special_tokens=special)["input_ids"], text
    size = sum(os.path.getsize(os.path.join(gpu_check.TOKENIZER_DIR, f)) for f in os.listdir(gpu_check.TOKENIZER_DIR))
    assert size < 5 * 2 ** 20


# ------------------------------------------------------------------- bf16 numerics on CPU
@pytest.fixture(scope="module")
def models(tiny_llm_dir, tmp_path_factory):
    """(fp32 model, bf16 model, training batch, valid users) with the same non-zero LoRA weights, no dropout."""
    from recbole_msl.model.llmmsl import LLMMSL
    from recbole_msl.recbole_seam.data import create_dataset, data_preparation

    overrides = {"llm_path": tiny_llm_dir, "lora_dropout": 0.0, "num_beams": 10, "show_progress": False,
                 "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))}
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict=overrides)
    train, valid, _ = data_preparation(config, create_dataset(config))

    def build(**extra):
        torch.manual_seed(0)
        return LLMMSL(Config(model="LLMMSL", dataset="ml-100k", config_dict={**overrides, **extra}), train._dataset)

    m32, m16 = build(llm_dtype="float32"), build(llm_dtype="bfloat16")
    gpu_check.set_lora(m32)
    gpu_check.copy_lora(m32, m16)
    return {"fp32": m32, "bf16": m16, "build": build, "batch": next(iter(train))[:8],
            "users": next(iter(valid))[0][:4]}


def test_dtypes_are_what_was_asked_for(models):
    assert next(models["fp32"].base.parameters()).dtype == torch.float32
    base16 = models["bf16"].base
    assert base16.get_input_embeddings().weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in models["bf16"].parameters() if p.requires_grad)  # LoRA stays fp32


def _loss_inputs(model, batch):
    """(valid logits [P, D], valid mask, target column, full logits [P, V], targets [P], sample [P]) of a batch."""
    with torch.no_grad():
        hidden, targets, nodes, sample = model._response_states(model._histories(batch),
                                                                batch[model.POS_ITEM_ID].tolist())
        branch = model.trie.num_children(nodes) > 1
        tokens, valid, target_index = model.valid_sets(nodes[branch], targets[branch])
        return (model.head(hidden[branch], tokens), valid, target_index, model.head(hidden), targets,
                sample[branch])


def test_loss_functions_compute_in_float32_whatever_the_logits_dtype():
    """bf16 logits are upcast before the softmax: the terms equal the fp32 terms of the same (rounded) values."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(12, 40, generator=g) * 4).bfloat16()
    valid = torch.rand(12, 40, generator=g) < 0.3
    valid[:, 0] = True
    target = torch.zeros(12, dtype=torch.long)
    msl = masked_softmax_loss_terms(logits, valid, target, 1.7)
    assert msl.dtype == torch.float32
    torch.testing.assert_close(msl, masked_softmax_loss_terms(logits.float(), valid, target, 1.7), rtol=0, atol=0)
    lml = lm_loss_terms(logits, target)
    assert lml.dtype == torch.float32
    torch.testing.assert_close(lml, lm_loss_terms(logits.float(), target), rtol=0, atol=0)
    stats = ats_statistics(logits, valid, target)
    assert stats.dtype == torch.float64
    torch.testing.assert_close(stats, ats_statistics(logits.float(), valid, target), rtol=0, atol=0)


def test_bf16_msl_and_lml_terms_match_fp32(models):
    batch = models["batch"]
    valid32, mask32, target32, full32, targets32, _ = _loss_inputs(models["fp32"], batch)
    valid16, mask16, target16, full16, targets16, _ = _loss_inputs(models["bf16"], batch)
    assert valid16.dtype == full16.dtype == torch.bfloat16
    assert torch.equal(mask32, mask16) and torch.equal(target32, target16) and torch.equal(targets32, targets16)
    for tau in (1.0, 1.5, 4.5):
        msl32 = masked_softmax_loss_terms(valid32, mask32, target32, tau)
        msl16 = masked_softmax_loss_terms(valid16, mask16, target16, tau)
        torch.testing.assert_close(msl16, msl32, atol=TERM_ATOL, rtol=TERM_RTOL)
        assert abs(float(msl16.mean() / msl32.mean()) - 1) <= LOSS_REL
    lml32, lml16 = lm_loss_terms(full32, targets32), lm_loss_terms(full16, targets16)
    torch.testing.assert_close(lml16, lml32, atol=TERM_ATOL, rtol=TERM_RTOL)
    assert abs(float(lml16.mean() / lml32.mean()) - 1) <= LOSS_REL


def test_bf16_ats_statistics_and_estimate_match_fp32(models):
    estimates = {}
    for name in ("fp32", "bf16"):
        valid, mask, target, _, _, sample = _loss_inputs(models[name], models["batch"])
        choice = ats_positions(sample, mask.sum(1))
        stats = ats_statistics(valid[choice], mask[choice], target[choice])
        estimates[name] = (stats, ats_estimate(stats, 0.25, (1.5, 5.0)))
    (s32, e32), (s16, e16) = estimates["fp32"], estimates["bf16"]
    assert torch.equal(s32[[0, 2, 5]], s16[[0, 2, 5]])  # counts: positions, valid tokens, sum of |V_t|
    torch.testing.assert_close(s16[[1, 3, 4]], s32[[1, 3, 4]], rtol=2e-2, atol=0.5)  # sums of logits
    assert abs(e16.raw - e32.raw) <= TAU_HAT_ABS
    assert abs(e16.delta - e32.delta) <= 5e-2 * max(abs(e32.delta), 1.0)
    assert e16.var == pytest.approx(e32.var, rel=2e-2)


@pytest.mark.parametrize("loss", ["msl", "lml"])
def test_bf16_loss_and_lora_gradients_match_fp32(models, loss):
    """The model's training loss (mean of its terms) and the LoRA gradients, bf16 against fp32."""
    l32, g32, _ = gpu_check.loss_and_grads(models["fp32"], models["batch"], loss)
    l16, g16, _ = gpu_check.loss_and_grads(models["bf16"], models["batch"], loss)
    assert abs(l16 - l32) / abs(l32) <= LOSS_REL
    agree = gpu_check.grad_agreement(g32, g16)
    assert agree["norm"] > 0 and agree["tensors"] == 8  # q_proj and v_proj, A and B, 2 layers
    assert agree["cos"] >= GRAD_COS and agree["min_tensor_cos"] >= 0.95 and agree["norm_rel"] <= GRAD_NORM_REL


def test_bf16_beam_search_ranks_like_fp32_exhaustive_scoring(models, smol_tokenizer):
    """10 titles, 10 beams: bf16 finds every title, orders them as fp32 exhaustive scoring (up to near-ties)."""
    ok, detail, figures, _ = gpu_check.check_beam_search(models["fp32"].base, models["bf16"].base, smol_tokenizer,
                                                         torch.device("cpu"))
    assert ok, detail
    assert figures["one_prompt_per_user_layout"]  # the shared-prompt attention ran in bf16
    for user in figures["users"]:
        assert user["same_set"] and user["max_score_diff_bf16"] <= SCORE_ABS
        assert user["max_score_diff_fp32_search"] <= 1e-3


def test_bf16_predict_scores_match_fp32(models):
    """LLMMSL.predict (teacher-forced title scores) in bf16 against fp32 for (user, item) pairs."""
    users = models["users"]
    items = torch.tensor([1, 50, 172, 181, 258, 300, 7, 100])
    pairs = users.repeat(len(items) // len(users))
    pairs.update(type(pairs)({models["fp32"].ITEM_ID: items}))
    with torch.no_grad():
        s32, s16 = models["fp32"].predict(pairs), models["bf16"].predict(pairs)
    assert s16.dtype == torch.float32 and torch.isfinite(s32).all()
    torch.testing.assert_close(s16, s32, atol=SCORE_ABS, rtol=0)


# ------------------------------------------------------------- dtype and device decisions
def test_llm_dtype_auto_is_bf16_on_cuda_and_fp32_on_cpu(monkeypatch):
    from recbole_msl.lm.backbone import resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", torch.device("cuda")) == resolve_dtype(None, torch.device("cuda", 1)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a T4 or V100
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # asked for: honoured on CPU too
    assert resolve_dtype("float32", torch.device("cuda")) == torch.float32
    with pytest.raises(ConfigError) as err:
        resolve_dtype("int8", torch.device("cuda"))
    assert "\n" not in str(err.value)


def _find_spec_without(monkeypatch, *absent, present=()):
    """importlib.util.find_spec as if ``absent`` were not installed and ``present`` were."""
    import importlib.machinery
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in absent:
            return None
        if name in present:
            return importlib.machinery.ModuleSpec(name, None)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_loading_is_refused_without_cuda_or_bitsandbytes(bits, monkeypatch, tiny_llm_dir):
    from recbole_msl.lm import backbone
    from recbole_msl.lm.options import BackboneOptions

    config = {"llm_path": tiny_llm_dir, "llm_load_in_bits": bits, "llm_dtype": "auto", "trust_remote_code": False,
              "show_progress": False}
    _find_spec_without(monkeypatch, present=("bitsandbytes",))  # bitsandbytes there, but no CUDA
    with pytest.raises(ConfigError) as err:
        backbone.load_backbone(BackboneOptions.from_mapping(config), torch.device("cpu"))  # refused before anything is loaded
    assert "needs CUDA and the bitsandbytes package" in str(err.value) and "\n" not in str(err.value)

    _find_spec_without(monkeypatch, "bitsandbytes")  # CUDA (as the device says), but no bitsandbytes
    with pytest.raises(ConfigError) as err:
        backbone._quantization(BackboneOptions.from_mapping(config), torch.device("cuda"))
    assert "needs CUDA and the bitsandbytes package" in str(err.value) and "\n" not in str(err.value)

    _find_spec_without(monkeypatch, present=("bitsandbytes",))  # both: a bitsandbytes config of that width
    quant = backbone._quantization(BackboneOptions.from_mapping(config), torch.device("cuda"))
    assert (quant.load_in_4bit, quant.load_in_8bit) == (bits == 4, bits == 8)
    if bits == 4:
        assert quant.bnb_4bit_compute_dtype == torch.bfloat16


def test_other_widths_are_refused_and_none_means_unquantized():
    from recbole_msl.lm.backbone import _quantization
    from recbole_msl.lm.options import BackboneOptions

    for bits in (None, 0, 16, 32):
        assert _quantization(BackboneOptions.from_mapping({"llm_load_in_bits": bits}), torch.device("cuda")) is None
    with pytest.raises(ConfigError, match="must be 4, 8 or ~"):
        _quantization(BackboneOptions.from_mapping({"llm_load_in_bits": 3}), torch.device("cuda"))


@pytest.fixture
def torchrun_env(monkeypatch):
    """WORLD_SIZE=2 as torchrun sets it (this process: rank 0, local rank 1); joining the group is recorded, not done."""
    from recbole_msl.recbole_seam import config as config_module

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    joined = []
    monkeypatch.setattr(config_module, "_join_process_group", lambda *args: joined.append(args))
    return joined


def _fake_cuda(monkeypatch, available: bool):
    devices = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: devices.append(device))
    return devices


def _config(**extra):
    return Config(model="LLMMSL", dataset="ml-100k", config_dict={"show_progress": False, **extra})


def test_nccl_is_chosen_with_cuda(torchrun_env, monkeypatch):
    devices = _fake_cuda(monkeypatch, True)
    config = _config()
    assert config["dist_backend"] == "nccl" and config["device"] == torch.device("cuda", 1)
    assert devices == [torch.device("cuda", 1)]  # one device per local rank
    assert torchrun_env == [("nccl", 0, 2)]
    assert (config["world_size"], config["rank"], config["local_rank"], config["single_spec"]) == (2, 0, 1, False)


def test_gloo_is_chosen_without_cuda_or_with_use_gpu_off(torchrun_env, monkeypatch):
    _fake_cuda(monkeypatch, False)
    config = _config()
    assert config["dist_backend"] == "gloo" and config["device"] == torch.device("cpu")
    _fake_cuda(monkeypatch, True)
    config = _config(use_gpu=False)
    assert config["dist_backend"] == "gloo" and config["device"] == torch.device("cpu")
    config = _config(dist_backend="gloo")  # asked for gloo on CUDA: allowed, the device stays CUDA
    assert config["dist_backend"] == "gloo" and config["device"] == torch.device("cuda", 1)
    assert torchrun_env == [("gloo", 0, 2)] * 3


def test_nccl_asked_for_on_cpu_is_refused_in_one_line(torchrun_env, monkeypatch):
    _fake_cuda(monkeypatch, False)
    with pytest.raises(ConfigError) as err:
        _config(dist_backend="nccl")
    assert "nccl needs CUDA" in str(err.value) and "--dist_backend=gloo" in str(err.value)
    assert "\n" not in str(err.value) and torchrun_env == []  # refused before any process group


def test_single_process_ignores_the_backend(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = _config(gpu_id="")
    assert config["device"] == torch.device("cpu") and config["use_gpu"] is False and config["single_spec"]


# ---------------------------------------------------------- gradient checkpointing with LoRA
def test_gradient_checkpointing_with_lora_equals_the_plain_path_and_trains(models):
    plain = models["fp32"]
    ckpt = models["build"](llm_dtype="float32", gradient_checkpointing=True)
    gpu_check.copy_lora(plain, ckpt)
    assert ckpt.base.is_gradient_checkpointing and not plain.base.is_gradient_checkpointing
    batch = models["batch"]

    for loss in ("msl", "lml"):
        l_plain, g_plain, _ = gpu_check.loss_and_grads(plain, batch, loss)
        l_ckpt, g_ckpt, _ = gpu_check.loss_and_grads(ckpt, batch, loss)
        assert l_ckpt == pytest.approx(l_plain, rel=1e-5)
        agree = gpu_check.grad_agreement(g_plain, g_ckpt)
        assert agree["norm"] > 0 and agree["err_rel"] <= 1e-4

    for model, recomputed in ((plain, False), (ckpt, True)):  # layer 0's MLP runs again in the backward pass
        calls, mlp = [], model.base.get_decoder().layers[0].mlp
        run = mlp.forward  # (forward hooks do not fire in the recomputation; the forward itself does)
        mlp.forward = lambda *args, calls=calls, run=run, **kwargs: calls.append(1) or run(*args, **kwargs)
        model.train()
        try:
            total, count = model.loss_terms(batch)
            forward = len(calls)
            (total / count).backward()
        finally:
            del mlp.forward
            model.zero_grad(set_to_none=True)
            model.eval()
        assert forward > 0 and len(calls) == (2 * forward if recomputed else forward), (forward, len(calls))

    params = [p for p in ckpt.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    ckpt.train()
    losses = []
    for _ in range(4):
        optimizer.zero_grad(set_to_none=True)
        loss = ckpt.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    ckpt.eval()
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
    assert all(not torch.equal(b, p.detach()) for b, p in zip(before, params))
