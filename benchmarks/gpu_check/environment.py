"""The packages the checks need: what is missing or too new, wheels installed from a folder, the tensorboard stub,
the plugin's RecBole-free modules importable without its ``__init__``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import types

import torch

from ..common import log
from .settings import ROOT

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
