"""RecBole's Config, plus the plugin's property files and explicit command-line overrides."""

from __future__ import annotations

import os

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from .compat import install_numpy_aliases
from .data_checks import sequential_load_col
from .errors import ConfigError, first_line
from .registry import get_model
from .validate import is_int

_HERE = os.path.dirname(os.path.abspath(__file__))
# Installed wheels carry the YAMLs inside the package; a source checkout has them at the top level.
PROPERTIES_DIR = next((p for p in (os.path.join(_HERE, "properties"), os.path.join(os.path.dirname(_HERE), "properties"))
                       if os.path.isdir(p)), os.path.join(_HERE, "properties"))


def property_files(model: str, dataset: str) -> list[str]:
    """Plugin YAMLs in load order: overall, model, dataset (later files win, as in RecBole)."""
    names = ["overall.yaml", os.path.join("model", f"{model}.yaml"), os.path.join("dataset", f"{dataset}.yaml")]
    return [p for p in (os.path.join(PROPERTIES_DIR, n) for n in names) if os.path.isfile(p)]


def shipped_profiles() -> list[str]:
    folder = os.path.join(PROPERTIES_DIR, "profiles")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []


def profile_file(name: str) -> str:
    """The YAML of a shipped profile (``properties/profiles/<name>.yaml``, inside the installed package)."""
    path = os.path.join(PROPERTIES_DIR, "profiles", f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"unknown profile {name!r}; use one of {', '.join(shipped_profiles())}")
    return path


def resolve_config_files(entries) -> list[str]:
    """Config files as given, where a bare name that is no file (``cpu``) is the shipped profile of that name."""
    resolved = []
    for entry in entries or []:
        entry = str(entry)
        if os.path.isfile(entry):
            resolved.append(entry)
        elif os.sep not in entry and "/" not in entry and not entry.endswith((".yaml", ".yml")) \
                and entry in shipped_profiles():
            resolved.append(profile_file(entry))
        else:
            raise ConfigError(f"config file {entry} does not exist; check --config_files (a path, or a shipped "
                              f"profile: {', '.join(shipped_profiles())})")
    return resolved


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``--key=value`` strings to a dict of raw strings (RecBole converts the types)."""
    overrides = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"cannot read argument '{arg}'; write overrides as --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = "None" if value.strip() == "~" else value  # YAML's null, as in the property files
    return overrides


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def _join_process_group(backend: str, rank: int, world: int) -> None:
    """torch.distributed's env:// rendezvous (MASTER_ADDR/MASTER_PORT, as torchrun sets them), once per process."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    try:
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot join the {backend} process group ({first_line(err)}); launch with "
                          f"torchrun --nproc_per_node=N run_recbole_msl.py ... or set --dist_backend") from None


# RecBole options that RecBole itself never type-checks (a string there fails deep inside training)
_INT_OPTIONS = {"epochs": 0, "train_batch_size": 1, "eval_batch_size": 1, "stopping_step": 0,
                "eval_step": None, "MAX_ITEM_LIST_LENGTH": 1, "seed": None}
_NUMBER_OPTIONS = {"learning_rate": 0.0, "weight_decay": 0.0}


def check_recbole_options(final: dict) -> None:
    """One-line errors for RecBole options of the wrong type (``--epochs=ten``) before RecBole trips on them."""
    from recbole.evaluator import metric_types

    for key, low in _INT_OPTIONS.items():
        value = final.get(key)
        if value is not None and (not is_int(value) or (low is not None and value < low)):
            bound = "" if low is None else f" >= {low}"
            raise ConfigError(f"{key} must be an integer{bound}, not {value!r}; e.g. --{key}=10")
    for key, low in _NUMBER_OPTIONS.items():
        value = final.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < low):
            raise ConfigError(f"{key} must be a number >= {low}, not {value!r}; e.g. --{key}=0.0001")
    topk = final.get("topk")
    ks = topk if isinstance(topk, list) else [topk]
    if not ks or not all(is_int(k) and k > 0 for k in ks):
        raise ConfigError(f"topk must be a positive integer or a list of them, not {topk!r}; e.g. --topk=[5,10]")
    metrics = final.get("metrics") or []
    for metric in [metrics] if isinstance(metrics, str) else metrics:
        if str(metric).lower() not in metric_types:
            raise ConfigError(f"unknown metric {metric!r}; use RecBole's names, e.g. Recall, MRR, NDCG, Hit, "
                              f"Precision")


class Config(RecBoleConfig):
    """Precedence (lowest first): RecBole's properties, ours, config files, config_dict, command line.

    RecBole reads ``sys.argv`` itself; here the command-line overrides are passed in explicitly
    (``cmd_args``), so the Python API is never affected by the caller's argv (pytest, notebooks).
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
        self._cmd_args = list(cmd_args or [])
        super().__init__(model=model, dataset=dataset, config_file_list=resolve_config_files(config_file_list),
                         config_dict=config_dict)

    def compatibility_settings(self):
        install_numpy_aliases()

    def _init_device(self):
        """Under torchrun (``WORLD_SIZE`` > 1) join its process group; otherwise RecBole's single-process setup.

        RecBole's own multi-process branch hard-codes NCCL, one CUDA device per rank and a
        tcp:// address of its own, so it cannot run under torchrun or on CPU.
        """
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1:
            super()._init_device()
            device = self.final_config_dict["device"]  # RecBole keeps use_gpu True on a CPU-only machine
            self.final_config_dict["use_gpu"] = getattr(device, "type", str(device)) == "cuda"
            return
        import torch

        final = self.final_config_dict
        local_rank, rank = _env_int("LOCAL_RANK", 0), _env_int("RANK", 0)
        cuda = bool(final.get("use_gpu", True)) and torch.cuda.is_available()
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        backend = str(final.get("dist_backend") or ("nccl" if cuda else "gloo")).lower()
        if backend == "nccl" and not cuda:
            raise ConfigError("dist_backend nccl needs CUDA devices; use --dist_backend=gloo on CPU")
        if cuda:
            torch.cuda.set_device(device)
        _join_process_group(backend, rank, world)
        final.update(single_spec=False, local_rank=local_rank, rank=rank, world_size=world, nproc=world,
                     device=device, dist_backend=backend)
        if rank != 0:  # only rank 0 logs and shows progress, as in RecBole
            final.update(state="error", show_progress=False, verbose=False)

    def _load_config_files(self, file_list):
        merged = {}
        for path in file_list or []:
            if not os.path.isfile(path):
                raise ConfigError(f"config file {path} does not exist; check --config_files")
            try:
                with open(path, encoding="utf-8") as f:
                    loaded = yaml.load(f.read(), Loader=self.yaml_loader)
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}" if mark else ""
                raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
            if loaded is None:
                continue
            if not isinstance(loaded, dict):
                raise ConfigError(f"config file {path} must be a mapping of key: value lines")
            merged.update(loaded)
        return merged

    def _load_cmd_line(self):
        return self._convert_config_dict(parse_overrides(self._cmd_args))

    def _get_model_and_dataset(self, model, dataset):
        model = model if model is not None else self.external_config_dict.get("model")
        dataset = dataset if dataset is not None else self.external_config_dict.get("dataset")
        if model is None:
            raise ConfigError("no model given; pass --model=LLMMSL (or a RecBole model such as SASRec)")
        if dataset is None:
            raise ConfigError("no dataset given; pass --dataset=ml-100k (or another data set name)")
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in property_files(model, dataset):
            loaded = self._update_internal_config_dict(path)
            if loaded and os.path.basename(os.path.dirname(path)) == "dataset":
                self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]

    def _set_default_parameters(self):
        final = self.final_config_dict
        if (final.get("loss_type") == "CE" and final.get("MODEL_TYPE") == ModelType.SEQUENTIAL
                and "train_neg_sample_args" not in self.external_config_dict):
            final["train_neg_sample_args"] = None
        unsupported = getattr(self.model_class, "unsupported_metrics", set())
        metrics = final.get("metrics") or []
        bad = [m for m in ([metrics] if isinstance(metrics, str) else metrics) if str(m).lower() in unsupported]
        if bad:
            raise ConfigError(f"metric {bad[0]} needs a score for every item, which {self.model} does not give; "
                              f"use top-k metrics (Recall, NDCG, Hit, MRR, Precision, ...)")
        check_recbole_options(final)
        super()._set_default_parameters()
        if final.get("MODEL_TYPE") == ModelType.SEQUENTIAL and "load_col" not in self.external_config_dict:
            needed = sequential_load_col(self)  # RecBole's default for an unknown data set drops the timestamp
            if needed is not None:
                final["load_col"] = needed
