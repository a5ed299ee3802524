"""RecBole's Config, plus the plugin's property files, profiles, explicit command-line overrides, the unknown-key
check and torchrun's process group (each in its own module, named below)."""

from __future__ import annotations

import os
import sys

import torch
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from ..errors import ConfigError
from .compat import install_numpy_aliases
from .data_checks import sequential_load_col
from .option_keys import (  # noqa: F401 - some imported from here by callers and tests
    _READ_IN_CODE,
    ALLOW_UNKNOWN,
    _yaml_keys,
    allows_unknown,
    check_option_keys,
    check_override_args,
    known_option_keys,
    parse_overrides,
)
from .option_types import check_recbole_options
from .process_group import env_int
from .process_group import join_process_group as _join_process_group  # looked up here, so a test can stand in for it
from .property_files import (  # noqa: F401 - some imported from here by callers and tests
    PROPERTIES_DIR,
    profile_file,
    property_files,
    read_config_file,
    resolve_config_files,
    shipped_profiles,
)
from .registry import get_model


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
        if self.final_config_dict.get("show_progress", False) is None:  # ~: bars on a terminal, else a line a minute
            self.final_config_dict["show_progress"] = sys.stderr.isatty()

    def compatibility_settings(self):
        install_numpy_aliases()

    def _init_device(self):
        """Under torchrun (``WORLD_SIZE`` > 1) join its process group; otherwise RecBole's single-process setup.

        RecBole's own multi-process branch hard-codes NCCL, one CUDA device per rank and a
        tcp:// address of its own, so it cannot run under torchrun or on CPU.
        """
        world = env_int("WORLD_SIZE", 1)
        if world <= 1:
            super()._init_device()
            device = self.final_config_dict["device"]  # RecBole keeps use_gpu True on a CPU-only machine
            self.final_config_dict["use_gpu"] = getattr(device, "type", str(device)) == "cuda"
            return
        final = self.final_config_dict
        local_rank, rank = env_int("LOCAL_RANK", 0), env_int("RANK", 0)
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
        given = self.external_config_dict.get("data_path")
        if self.dataset == "ml-100k" and given:  # RecBole reads ml-100k from its own package whatever data_path says
            final["data_path"] = os.path.join(given, self.dataset)
        if final.get("MODEL_TYPE") == ModelType.SEQUENTIAL and "load_col" not in self.external_config_dict:
            needed = sequential_load_col(self)  # RecBole's default for an unknown data set drops the timestamp
            if needed is not None:
                final["load_col"] = needed
