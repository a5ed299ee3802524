"""RecBole's Config, plus the plugin's property files and explicit command-line overrides."""

from __future__ import annotations

import difflib
import functools
import glob
import os
import re

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from ..errors import ConfigError, UnknownOptionError, first_line
from ..validate import is_int
from .compat import install_numpy_aliases
from .data_checks import sequential_load_col
from .registry import get_model

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
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


ALLOW_UNKNOWN = "allow_unknown_keys"  # the escape hatch: keys nothing here knows are kept (custom code reads them)
# Keys RecBole or the plugin read in code: config["key"] / config.get("key") (and the plugin's final[...] dict)
_READ_IN_CODE = re.compile(r"""\b(?:config|final_config_dict|final)\s*(?:\[\s*|\.get\(\s*)["']([A-Za-z_]\w*)["']""")
# RecBole's download tables map data set names to URLs; their keys are no options
_NOT_OPTION_FILES = {"url.yaml", "kg_url.yaml"}


def _yaml_keys(path: str) -> set[str]:
    """The top-level keys of a shipped YAML file; none from a file that is no mapping."""
    try:
        return {str(k) for k in read_config_file(path)}
    except (ConfigError, OSError):
        return set()


@functools.lru_cache(maxsize=1)
def known_option_keys() -> frozenset[str]:
    """Every key some configuration layer knows, for every model and data set (a comparison mixes models):
    RecBole's argument lists and all its property YAMLs (overall, every model, every data set, the quick-start
    files), the plugin's YAMLs (overall, models, data sets, profiles) and the keys RecBole's and the plugin's
    code read (``config["..."]``). About 40 ms once per process."""
    import recbole
    from recbole.utils import argument_list

    keys = {ALLOW_UNKNOWN, "model", "dataset"}
    keys.update(argument_list.general_arguments + argument_list.training_arguments
                + argument_list.evaluation_arguments + argument_list.dataset_arguments)
    recbole_dir = os.path.dirname(recbole.__file__)
    for folder in (os.path.join(recbole_dir, "properties"), PROPERTIES_DIR):
        for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
            inside = os.path.relpath(path, folder).split(os.sep)
            if inside[0] != "comparisons" and inside[-1] not in _NOT_OPTION_FILES:  # comparison specs: own schema
                keys |= _yaml_keys(path)
    for folder in (recbole_dir, _HERE):
        for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True):
            with open(path, encoding="utf-8") as f:
                keys.update(_READ_IN_CODE.findall(f.read()))
    return frozenset(keys)


def allows_unknown(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _closest(key: str, known) -> list[str]:
    """Up to two known keys closest to ``key`` (case-insensitive), best first."""
    lowered = {k.lower(): k for k in sorted(known)}
    wanted = key.lower().replace("-", "_")
    near = difflib.get_close_matches(wanted, list(lowered), n=2, cutoff=0.6)
    if len(near) == 2 and difflib.SequenceMatcher(None, wanted, near[1]).ratio() < \
            difflib.SequenceMatcher(None, wanted, near[0]).ratio() - 0.05:
        near = near[:1]  # a clear best match alone
    return [lowered[k] for k in near]


def check_option_keys(keys, where: str = "", style: str = "flag", extra_known=()) -> None:
    """Refuse keys that no configuration layer knows with one line naming the closest known ones.

    ``where``: where the keys were given (`` in config file X``; empty for the command line); ``style``: how keys
    are written there: ``flag`` (``--key``), ``yaml`` (``key``) or ``dict`` (``'key'``); ``extra_known``: keys a
    caller also accepts (a sub-command's own flags).
    """
    known = known_option_keys() | set(extra_known)
    unknown = [str(k) for k in keys if str(k) not in known]
    if not unknown:
        return
    show, hatch = {"flag": (lambda k: f"--{k}", f"--{ALLOW_UNKNOWN}=True"),
                   "yaml": (str, f"{ALLOW_UNKNOWN}: True"),
                   "dict": (repr, f"{{'{ALLOW_UNKNOWN}': True}}")}[style]

    def hint(key):
        near = _closest(key, known)
        return f"did you mean {' or '.join(show(k) for k in near)}?" if near else \
            "no known option is close (README.md lists them under Options)"

    if len(unknown) == 1:
        raise UnknownOptionError(f"unknown option {show(unknown[0])}{where}; {hint(unknown[0])} "
                                 f"(a custom key on purpose: add {hatch})")
    listed = ", ".join(f"{show(k)} ({hint(k)})" for k in unknown)
    raise UnknownOptionError(f"unknown options{where}: {listed}; fix them (custom keys on purpose: add {hatch})")


def check_override_args(args: list[str], extra_known=()) -> dict[str, str]:
    """``--key=value`` strings to a dict (:func:`parse_overrides`), refusing unknown keys unless
    ``--allow_unknown_keys=True`` is among them."""
    overrides = parse_overrides(args)
    if not allows_unknown(overrides.get(ALLOW_UNKNOWN, False)):
        check_option_keys(overrides, extra_known=extra_known)
    return overrides


def read_config_file(path: str, loader=yaml.FullLoader) -> dict:
    """A config file's mapping (empty when the file is blank), with one-line errors."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist; check --config_files")
    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.load(f.read(), Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value lines")
    return loaded


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

    run_stem: str | None = None  # the run's <date>-<tag>, which its log, checkpoint and result file share

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None,
                 check_keys: bool = True):
        """``check_keys=False`` skips the unknown-key check (a checkpoint's stored overrides, checked when saved)."""
        self._cmd_args = list(cmd_args or [])
        self._check_keys = check_keys
        self._file_keys: list[tuple[str, list[str]]] = []
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
            loaded = read_config_file(path, self.yaml_loader)
            self._file_keys.append((path, list(loaded)))
            merged.update(loaded)
        return merged

    def _merge_external_config_dict(self):
        """RecBole's merge, then: every key of the command line, the config files and config_dict must be known
        to some layer (a typo would otherwise be ignored silently), unless allow_unknown_keys is True in any."""
        super()._merge_external_config_dict()
        if not self._check_keys or allows_unknown(self.external_config_dict.get(ALLOW_UNKNOWN, False)):
            return
        check_option_keys(self.cmd_config_dict)
        for path, keys in self._file_keys:
            check_option_keys(keys, f" in config file {path}", "yaml")
        check_option_keys(self.variable_config_dict, " in config_dict", "dict")

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
