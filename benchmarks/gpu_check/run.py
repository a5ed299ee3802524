"""The main loop: every size's backbone, its checks and measures, check 5, the table and the JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

import torch

from ..__main__ import table
from ..common import log, machine, write_json
from ..fixture import PROMPT_HISTORY, base_overrides, training_batch
from .backbones import _free, build_backbone, copy_lora, load_tokenizer, set_lora
from .checks import check_attention, check_beam_search, check_bf16_losses, check_checkpointing, check_end_to_end
from .environment import hide, prepare_environment
from .measures import measure_ranking, measure_train_step
from .report import Report
from .settings import DESCRIPTION, PLANS, SIZES, TOL


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
        from ..peak import matmul_peak

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
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=DESCRIPTION)
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
