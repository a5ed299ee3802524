"""Data set creation around RecBole's: offline-safe download, and evaluation on the first N users."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile

import numpy as np
import recbole
import torch
import torch.distributed as dist
import yaml
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data.utils import create_samplers, get_dataloader, load_split_dataloaders, save_split_dataloaders
from recbole.sampler import KGSampler
from recbole.utils import ModelType
from recbole.utils.url import download_url, extract_zip, rename_atomic_files

from ..distributed import is_distributed, rank, shard_split, single_process_loaders
from ..errors import ConfigError, first_line
from ..evaluation.protocol import UserHistories
from ..folders import missing_folders, remove_created
from ..validate import flag, positive_int
from .compat import attach_user_histories
from .data_checks import check_atomic_files

logger = logging.getLogger(__name__)
DOWNLOAD_TIMEOUT_S = 60  # per network operation


def _has_atomic_files(path: str, name: str) -> bool:
    return os.path.isdir(path) and any(f.startswith(name + ".") and f.endswith(".inter") for f in os.listdir(path))


def default_download_url(name: str) -> str | None:
    """RecBole's own URL for a data set name, from its ``url.yaml``."""
    table = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(table, encoding="utf-8") as f:
        return (yaml.safe_load(f) or {}).get(name)


def download_dataset(config) -> None:
    """Fetch and unpack the atomic files into ``data_path`` (rank 0), all-or-nothing.

    Replaces RecBole's ``Dataset._download``, which calls ``torch.distributed.barrier()``
    even in a single process. ``download_url`` overrides RecBole's URL (mirrors, tests).
    """
    path, name = config["data_path"], config["dataset"]
    url = config["download_url"] or default_download_url(name)
    where = f"put {name}.inter (and {name}.item) in RecBole's atomic format into {os.path.abspath(path)}"
    if url is None:
        raise ConfigError(f"data set {name} is not at {os.path.abspath(path)}; {where} or fix data_path")
    if rank() == 0:
        parent = os.path.dirname(os.path.abspath(path))
        created = missing_folders(parent)  # removed again if the download fails
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=f".download-{name}-")
        previous_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a network that drops packets would otherwise hang for ever
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
            remove_created(created)  # only folders this call made, and only if empty
            raise ConfigError(f"data set {name} is not on disk and could not be downloaded from {url} "
                              f"({first_line(err)}); {where}") from None
        finally:
            socket.setdefaulttimeout(previous_timeout)
    if is_distributed():
        dist.barrier()


def create_dataset(config):
    """RecBole's create_dataset, after making sure the atomic files are there and hold nothing RecBole would
    misread (:mod:`recbole_msl.data_checks`)."""
    if not _has_atomic_files(config["data_path"], config["dataset"]):
        download_dataset(config)
    check_atomic_files(config)
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


def _sample(split, n: int, unit: str, seed: int):
    """A fixed random sample of ``n`` users (all their rows) or ``n`` rows of an evaluation split, kept in order.

    Users are drawn from the split's sorted user ids with their own generator, so the valid and test
    splits of a leave-one-out split get the same users, whatever the run's seed.
    """
    users = split.inter_feat[split.uid_field]
    generator = torch.Generator().manual_seed(seed)
    if unit == "row":
        rows = torch.randperm(len(users), generator=generator)[:n].sort().values
    else:
        ids = torch.unique(users)  # sorted
        chosen = ids[torch.randperm(len(ids), generator=generator)[:n]]
        rows = torch.isin(users, chosen).nonzero().squeeze(1)
    return split.copy(split.inter_feat[rows])


def _evaluation_subsets(config) -> dict:
    """``{"valid": (kind, n), "test": (kind, n)}`` from eval_max_users / eval_sample_users (kind: first or sample)."""
    limit = positive_int(config["eval_max_users"], "eval_max_users", allow_none=True)
    sample = config["eval_sample_users"]
    if limit and sample:
        raise ConfigError("give either eval_max_users (the first N users) or eval_sample_users (a random sample), "
                          "not both: add --eval_sample_users=~ (or eval_max_users: ~) to drop the one a profile set")
    if limit:
        return {"valid": ("first", limit), "test": ("first", limit)}
    if sample is None:
        return {}
    if isinstance(sample, dict):
        unknown = set(sample) - {"valid", "test"}
        if unknown:
            raise ConfigError(f"eval_sample_users takes a number or {{valid: N, test: M}}, not keys {sorted(unknown)}")
        sizes = {k: positive_int(v, f"eval_sample_users.{k}", allow_none=True) for k, v in sample.items()}
    else:
        sizes = {"valid": positive_int(sample, "eval_sample_users"), "test": sample}
    if config["eval_sample_unit"] not in ("user", "row"):
        raise ConfigError(f"eval_sample_unit must be user or row, not {config['eval_sample_unit']!r}")
    return {k: ("sample", n) for k, n in sizes.items() if n}


def data_preparation(config, dataset):
    """RecBole's data_preparation, keeping only part of the valid and test splits when asked to:
    ``eval_max_users`` (the first N users, for smoke runs) or ``eval_sample_users`` (a fixed random sample).

    The loaders are built here from ``dataset.build()``'s splits, as RecBole's data_preparation builds them (and
    as RecBole-GNN does), so the splits can be checked, cut and sharded before any loader sees them. Under torchrun
    each process gets a contiguous shard of the valid and test users (:func:`shard_split`).
    With ``eval_exclude_seen`` every split carries each user's whole sequence (``user_histories``), read
    from the augmented data set right after RecBole's build; RecBole's benchmark files hold no more than
    their rows' windows, so there the window is the history.
    """
    subsets = _evaluation_subsets(config)
    _check_catalogue(config, dataset)
    loaded = load_split_dataloaders(config)
    if loaded is not None:  # RecBole's saved loaders (save_dataloaders): taken as they are
        if is_distributed():
            raise ConfigError("loaders saved with save_dataloaders cannot be sharded over processes; run one "
                              "process or drop dataloaders_save_path")
        dataset._change_feat_format()
        return loaded
    if any(kind == "first" for kind, _ in subsets.values()):
        logger.warning("eval_max_users: the first users of RecBole's order are not a random sample (a smoke-run "
                       "setting; use eval_sample_users for figures)")
    splits = _checked_splits(config, dataset, subsets)
    if is_distributed():
        splits[1], splits[2] = shard_split(config, splits[1], "valid"), shard_split(config, splits[2], "test")
    loaders = _loaders(config, dataset, splits)
    if config["save_dataloaders"]:
        save_split_dataloaders(config, dataloaders=loaders)
    return loaders


def _checked_splits(config, dataset, subsets) -> list:
    """RecBole's train / valid / test splits, checked, with their histories and evaluation subsets."""
    whole_histories = (flag(config["eval_exclude_seen"], "eval_exclude_seen", False)
                       and not config["benchmark_filename"] and config["MODEL_TYPE"] == ModelType.SEQUENTIAL)
    unit, seed = config["eval_sample_unit"] or "user", int(config["eval_sample_seed"] or 0)
    splits = list(dataset.build())
    _check_splits(config, splits)
    if whole_histories:  # build() has augmented the data set: every row of every user, in RecBole's order
        histories = UserHistories(dataset)
        for split in splits:
            attach_user_histories(split, histories)
    for index, name in ((1, "valid"), (2, "test")):
        if name in subsets and len(splits) == 3:
            kind, n = subsets[name]
            before = len(splits[index])
            splits[index] = (_first_users(splits[index], n) if kind == "first"
                             else _sample(splits[index], n, unit, seed))
            what = f"the first {n} users" if kind == "first" else f"a random sample of {n} {unit}s (seed {seed})"
            if len(splits[index]) < before:
                logger.warning(f"{name} metrics cover {len(splits[index])} of {before} rows: {what}")
            else:  # a subset as large as the split keeps every row
                logger.info(f"{name} metrics cover all {before} rows ({what} takes every one)")
    return splits


def _loaders(config, dataset, splits) -> tuple:
    """The three loaders from the splits, made as RecBole's data_preparation makes them. Under torchrun the
    evaluation loaders are built as in one process: their splits are already this process's shard."""
    train_split, valid_split, test_split = splits
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, splits)
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        neg = config["train_neg_sample_args"]
        kg_sampler = KGSampler(dataset, neg["distribution"], neg["alpha"])
        train = get_dataloader(config, "train")(config, train_split, train_sampler, kg_sampler, shuffle=True)
    else:
        train = get_dataloader(config, "train")(config, train_split, train_sampler, shuffle=config["shuffle"])
    with single_process_loaders(config):
        valid = get_dataloader(config, "valid")(config, valid_split, valid_sampler, shuffle=False)
        test = get_dataloader(config, "test")(config, test_split, test_sampler, shuffle=False)
    logger.info(f"[Training]: train_batch_size = [{config['train_batch_size']}] train_neg_sample_args: "
                f"[{config['train_neg_sample_args']}]")
    logger.info(f"[Evaluation]: eval_batch_size = [{config['eval_batch_size']}] eval_args: [{config['eval_args']}]")
    return train, valid, test
