"""Small helpers shared by the benchmarks: timing, peak memory, machine facts, JSON output.

Kept free of model code so every benchmark module can import it cheaply.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import platform
import re
import statistics
import time

import torch

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device() -> torch.device:
    """CUDA when present, else CPU: the suite measures whatever machine it runs on."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def weights_restored(model, lr: float = 1e-4):
    """An AdamW over ``model``'s trainable parameters, for timing real optimisation steps; on leaving, those
    parameters hold their values from before (a model the benchmarks share is left as found)."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    try:
        yield torch.optim.AdamW(params, lr=lr)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def median(values):
    return statistics.median(values)


# ----------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return _status_kib("VmRSS") * 1024


def _trim_heap():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then includes the allocator's free pages
        pass


class PeakMemory:
    """Peak memory of a block: max allocated on CUDA, peak RSS (VmHWM, reset via clear_refs) on CPU.

    ``peak`` is the absolute peak during the block, ``delta`` the peak minus the memory held before it.
    """

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            _trim_heap()  # give freed heap pages back, so RSS before the block is what is live
            with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS (Linux >= 4.0)
                f.write("5")
            self.base = rss_bytes()
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.peak = _status_kib("VmHWM") * 1024
        self.delta = self.peak - self.base
        return False


def memory_kind() -> str:
    return "cuda max_memory_allocated" if torch.cuda.is_available() else "process peak RSS (VmHWM)"


# ------------------------------------------------------------- machine
def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
            cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),  # noqa: UP017
        "cpu": cpu,
        "cpu_cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device()),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_json(name: str, figures: dict) -> str:
    """Write ``figures`` (plus machine facts) to ``benchmarks/results/<name>.json``; return the path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"benchmark": name, "machine": machine(), **figures}, f, indent=2, default=float)
        f.write("\n")
    return path


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
