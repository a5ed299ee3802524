"""What a run record says about where it ran: the CPU, the threads, torch and the code's version. Two runs of one
configuration and seed can differ in float rounding across these (docs/results.md: one LML setting gave two
results), so a record carries them and a reader can tell runs that should agree bit for bit."""

from __future__ import annotations

import os
import platform
import re
import subprocess

import torch

from .. import __version__


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
        return found.group(1).strip() if found else platform.processor()
    except OSError:
        return platform.processor()


def code_version() -> str:
    """The git commit of the checkout the package runs from (with "+changes" when its tree is modified), or the
    package's version outside a checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"recbole-msl {__version__}"
    return commit + ("+changes" if dirty else "")


def run_environment() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "code": code_version()}
