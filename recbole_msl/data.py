"""Data set creation around RecBole's: offline-safe download, and evaluation on the first N users."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import yaml
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.utils import ModelType

from .errors import ConfigError, first_line
from .trainer.distributed import is_distributed, rank, shard_evaluation
from .validate import positive_int

logger = logging.getLogger(__name__)


def _has_atomic_files(path: str, name: str) -> bool:
    return os.path.isdir(path) and any(f.startswith(name + ".") and f.endswith(".inter") for f in os.listdir(path))


def default_download_url(name: str) -> str | None:
    """RecBole's own URL for a data set name, from its ``url.yaml``."""
    import recbole

    table = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(table, encoding="utf-8") as f:
        return (yaml.safe_load(f) or {}).get(name)


def _missing_folders(path: str) -> list[str]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    while path and not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def download_dataset(config) -> None:
    """Fetch and unpack the atomic files into ``data_path`` (rank 0), all-or-nothing.

    Replaces RecBole's ``Dataset._download``, which calls ``torch.distributed.barrier()``
    even in a single process. ``download_url`` overrides RecBole's URL (mirrors, tests).
    """
    from recbole.utils.url import download_url, extract_zip, rename_atomic_files

    path, name = config["data_path"], config["dataset"]
    url = config["download_url"] or default_download_url(name)
    where = f"put {name}.inter (and {name}.item) in RecBole's atomic format into {os.path.abspath(path)}"
    if url is None:
        raise ConfigError(f"data set {name} is not at {os.path.abspath(path)}; {where} or fix data_path")
    if rank() == 0:
        parent = os.path.dirname(os.path.abspath(path))
        created = _missing_folders(parent)  # removed again if the download fails
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=f".download-{name}-")
        try:
            archive = download_url(url, staging)
            extract_zip(archive, staging)
            os.unlink(archive)
            rename_atomic_files(staging, os.path.splitext(os.path.basename(archive))[0], name)
            if not _has_atomic_files(staging, name):
                raise OSError(f"the archive holds no {name}.inter")
            os.replace(staging, path)
        except Exception as err:  # noqa: BLE001 - network down, bad archive: say where the files go
            shutil.rmtree(staging, ignore_errors=True)
            for folder in created:  # deepest first; only folders this call made, and only if empty
                try:
                    os.rmdir(folder)
                except OSError:
                    break
            raise ConfigError(f"data set {name} is not on disk and could not be downloaded from {url} "
                              f"({first_line(err)}); {where}") from None
    if is_distributed():
        dist.barrier()


def create_dataset(config):
    """RecBole's create_dataset, after making sure the atomic files are there."""
    if not _has_atomic_files(config["data_path"], config["dataset"]):
        download_dataset(config)
    try:
        return recbole_create_dataset(config)
    except ValueError as err:
        if not str(err).startswith("Some feat is empty"):
            raise
        filters = {k: config[k] for k in ("user_inter_num_interval", "item_inter_num_interval", "val_interval")
                   if config[k] is not None}
        raise ConfigError(f"no interactions of data set {config['dataset']} are left after filtering "
                          f"({filters or 'no filters set'}); loosen these filters or check that the .inter "
                          f"file's item ids appear in the .item file") from None


def _check_catalogue(config, dataset) -> None:
    """One-line errors for data sets too small for the configured evaluation; a warning for lone users."""
    name, topk = config["dataset"], max(config["topk"] or [1])
    mode = (config["eval_args"] or {}).get("mode", "full")  # RecBole makes it {"valid": .., "test": ..}
    full = "full" in (mode.values() if isinstance(mode, dict) else [mode])
    n_items = dataset.item_num - 1  # RecBole's id 0 is padding
    if full and topk > n_items:
        raise ConfigError(f"topk {topk} exceeds the {n_items} items of data set {name}; lower topk to at most "
                          f"{n_items} or use a larger data set")
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and not config["benchmark_filename"]:
        counts = np.bincount(np.asarray(dataset.inter_feat[dataset.uid_field]))  # a DataFrame before build()
        lone = int((counts == 1).sum())
        if lone:
            logger.warning(f"{lone} of {int((counts > 0).sum())} users of data set {name} have a single "
                           f"interaction: they give no (history, next item) sequence and are left out, as in "
                           f"RecBole's sequential split")


def _check_splits(config, splits) -> None:
    """Refuse an empty train, valid or test split with the reason, instead of RecBole's crash later on."""
    needs = {"train": 2, "valid": 3, "test": 3}  # interactions per user that leave-one-out needs for one target
    sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
    for part, split in zip(("train", "valid", "test"), splits):
        if split is not None and len(split) == 0:
            why = (f": with a sequential leave-one-out split a user needs at least {needs[part]} interactions "
                   f"to give it a sequence" if sequential else "")
            raise ConfigError(f"the {part} split of data set {config['dataset']} is empty{why}; add interactions, "
                              f"loosen user_inter_num_interval or change eval_args")


def _first_users(split, n_users: int):
    """The rows of the first ``n_users`` distinct users of an evaluation split."""
    users = split.inter_feat[split.uid_field]
    first = list(dict.fromkeys(users.tolist()))[:n_users]  # distinct users in order of appearance
    rows = torch.isin(users, torch.tensor(first, dtype=users.dtype)).nonzero().squeeze(1)
    return split.copy(split.inter_feat[rows])


def data_preparation(config, dataset):
    """RecBole's data_preparation; with ``eval_max_users`` the valid and test splits keep their first N users.

    Under torchrun the valid and test loaders are sharded without repeats (:func:`shard_evaluation`).
    """
    limit = positive_int(config["eval_max_users"], "eval_max_users", allow_none=True)
    _check_catalogue(config, dataset)
    build = dataset.build

    def build_checked():
        splits = build()
        _check_splits(config, splits)
        if not limit or len(splits) != 3:
            return splits
        train, valid, test = splits
        return train, _first_users(valid, limit), _first_users(test, limit)

    dataset.build = build_checked
    if limit:
        logger.warning(f"eval_max_users={limit}: valid and test metrics cover only the first {limit} users "
                       f"of each split (smoke-run setting, not comparable with full evaluations)")
    train, valid, test = recbole_data_preparation(config, dataset)
    shard_evaluation(valid, "valid")
    shard_evaluation(test, "test")
    return train, valid, test
