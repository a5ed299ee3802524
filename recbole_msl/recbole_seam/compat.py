"""Every shim between recbole-msl and RecBole 1.2.1 on a current stack, in one place.

Measured breaks and how each is handled:

* numpy 2 removed ``np.float_``/``np.complex_``/``np.unicode_``, which
  ``Config.compatibility_settings`` reads: :func:`install_numpy_aliases` sets the
  old names only where missing (our Config calls it instead).
* pandas 3 breaks RecBole's token_seq remapping and turns its chained
  ``fillna(inplace=True)`` into a silent no-op: pinned ``pandas<3`` in setup.cfg.
* ray 2.6.3 (a RecBole requirement) uses ``np.bool8`` and ``pkg_resources``
  (gone in setuptools >= 81): nothing here imports ray. ``recbole.quick_start``
  imports ray at import time, so :mod:`recbole_msl.quick_start` replaces it.
* torch >= 2.6 loads with ``weights_only=True``; RecBole pickles its Config into
  checkpoints, so best-model reload and resume fail on its own files:
  :class:`SafeCheckpointMixin` writes plain-data checkpoints (atomically) and
  reads them with ``weights_only=True`` (numpy and scipy values of ``other_parameter``, ItemKNN's and EASE's,
  as tensors: :mod:`recbole_msl.recbole_seam.plain_state`).
* ``get_model`` only looks in ``recbole.model``: :mod:`recbole_msl.registry` looks
  in the plugin first.
* Importing RecBole's sequential models turns autograd anomaly detection on for
  the whole process (``sine.py`` calls ``set_detect_anomaly(True)``): every later
  training records a stack trace per op. :mod:`recbole_msl.registry` restores the
  caller's setting after the lookup.
* ``run_recbole`` runs ``get_flops``, which deep-copies the model: skipped for
  plugin models (an LLM would sit twice in memory).
* With ``loss_type: CE`` RecBole demands ``train_neg_sample_args: ~``: our Config
  sets it unless the user gave one explicitly.
* RecBole's own code warns on every run of a current stack (``torch.cuda.amp.GradScaler`` in its
  trainer, ``Series.agg(len)`` in its data sets): :func:`quiet_recbole_warnings` ignores exactly
  those FutureWarnings, and only where RecBole's modules raise them.
* ``init_logger`` names the log by a hash of the config (two identical runs in one second share a
  file) and, through ``logging.basicConfig``, keeps the first run's file for every later run of a
  process: :func:`init_logger` gives each run its own file, named by the run's ``<date>-<tag>``,
  which its checkpoint and tensorboard folder share.
* RecBole's ``_check_nan`` raises a bare ValueError: :class:`SafeCheckpointMixin` raises a one-line
  :class:`~recbole_msl.errors.TrainingDivergedError` that names the cause.
* RecBole's sequential data sets copy each (history, next item) row's history one row at a time in Python
  (about a third of a tiny-backbone run on ml-100k): importing recbole_msl makes them use
  :mod:`recbole_msl.recbole_seam.sequence_augmentation`, which builds the same tensors with array operations.
"""

from __future__ import annotations

import io
import logging
import os
import warnings

import colorlog
import numpy as np
import torch
from colorama import init
from recbole.utils.logger import RemoveColorFilter, log_colors_config

from ..checkpoint import item_identity, json_safe
from ..errors import TrainingDivergedError
from ..files import run_path, write_atomic
from .option_keys import recbole_model_keys
from .plain_state import from_plain, to_plain

_NUMPY_ALIASES = {"bool": np.bool_, "int": np.int_, "float": np.float64, "complex": np.complex128,
                  "object": np.object_, "str": np.str_, "long": np.int_, "unicode": np.str_}


def install_numpy_aliases() -> None:
    """Provide the numpy 1.x aliases RecBole code still uses, without touching existing names."""
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def quiet_recbole_warnings() -> None:
    """FutureWarnings that RecBole 1.2.1's own code raises on every run of a current stack, about calls that still
    work here (the versions are pinned): each ignored by its message, and the new ones only where a RecBole module
    raises them, so the same call in other code still warns."""
    # pandas 2: RecBole's chained fillna on every load (works below pandas 3, hence the pin)
    warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # torch >= 2.4: RecBole's trainer builds torch.cuda.amp.GradScaler (disabled on CPU) in every epoch
    warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated",
                            category=FutureWarning, module=r"recbole\.")
    # pandas >= 2.1: Series.agg(len) in RecBole's token_seq split (dataset.py) and benchmark-file sequences
    # (sequential_dataset.py); agg still applies len to each element in pandas 2
    warnings.filterwarnings("ignore", message=r"using <built-in function len> in Series\.agg cannot aggregate",
                            category=FutureWarning, module=r"recbole\.")


quiet_recbole_pandas_warnings = quiet_recbole_warnings  # the former name


def install_array_augmentation() -> None:
    """Every RecBole sequential data set that keeps RecBole's augmentation builds its rows with
    :func:`~.sequence_augmentation.data_augmentation` (the same tensors, without a Python loop over rows)."""
    # both here, not at the top: RecBole's data modules need the numpy aliases this module installs first
    from recbole.data.dataset import SequentialDataset

    from .sequence_augmentation import data_augmentation  # imports RecBole's data modules too

    SequentialDataset.data_augmentation = data_augmentation


_LOG_HANDLER = "_recbole_msl_run_log"  # marks the handlers init_logger adds, so the next run replaces them


def init_logger(config, stem: str) -> str:
    """RecBole's ``init_logger`` (same format, level and colours) writing to
    ``log/<model>/<model>-<dataset>-<stem>.log``, where ``stem`` is the run's ``<date>-<tag>``; returns the path.
    The handlers of an earlier run of this process are replaced; as with RecBole's ``logging.basicConfig``, the
    console handler is added only when nobody else (a notebook's or pytest's logging) has put one on the root."""
    init(autoreset=True)
    folder = os.path.join("log", str(config["model"]))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{config['model']}-{config['dataset']}-{stem}.log")
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
              "critical": logging.CRITICAL}
    level = levels.get(str(config["state"]).lower(), logging.INFO)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _LOG_HANDLER, False)]:
        root.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"))
    file_handler.addFilter(RemoveColorFilter())
    handlers = [file_handler]
    if not root.handlers:
        console = logging.StreamHandler()
        console.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(asctime)-15s %(levelname)s  %(message)s",
                                                       "%d %b %H:%M", log_colors=log_colors_config))
        handlers.insert(0, console)
    for handler in handlers:
        handler.setLevel(level)
        setattr(handler, _LOG_HANDLER, True)
    # first: RecBole names the tensorboard folder after the first file handler (pytest adds one on /dev/null)
    root.handlers = handlers + [h for h in root.handlers if h not in handlers]
    root.setLevel(level)
    return path


def atomic_torch_save(obj, path: str) -> None:
    """torch.save through :func:`recbole_msl.files.write_atomic`: never a half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def model_settings(config) -> dict:
    """The settings a model's weights depend on: its own property file's keys and the history length, JSON-safe;
    stored in its .pth so that a later run loading it as an assistant rebuilds the same model."""
    keys = sorted(recbole_model_keys(str(config["model"]))) + ["MAX_ITEM_LIST_LENGTH"]
    return {k: json_safe(config[k]) for k in keys if k in config.final_config_dict}


class SafeCheckpointMixin:
    """For RecBole's own trainers: plain-data checkpoints that ``torch.load(weights_only=True)`` reads,
    under a name no other run uses (RecBole's is only unique to the second)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = run_path(config, self.saved_model_file)

    def _check_nan(self, loss):
        if not torch.isfinite(loss).all():
            raise TrainingDivergedError(
                f"the training loss of {self.config['model']} became {float(loss)}; the likely cause is a learning "
                f"rate too high (learning_rate={self.config['learning_rate']}): lower learning_rate, e.g. "
                f"learning_rate={self.config['learning_rate'] / 10:g}, or enable clip_grad_norm")

    def fit(self, train_data, *args, **kwargs):
        self.item_identity = item_identity(train_data._dataset)  # saved, so an assistant_checkpoint is checked
        return super().fit(train_data, *args, **kwargs)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": {"model": self.config["model"], "dataset": self.config["dataset"],
                       "settings": model_settings(self.config)},
            "items": getattr(self, "item_identity", None),
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": to_plain(self.model.other_parameter(), "other_parameter"),
            "optimizer": self.optimizer.state_dict(),
        }
        atomic_torch_save(state, path)
        if verbose:
            self.logger.info(f"Saving current: {path}")

    def _load_checkpoint(self, path):
        checkpoint = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(from_plain(checkpoint.get("other_parameter")))
        return checkpoint

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            path = model_file or self.saved_model_file
            self._load_checkpoint(path)
            self.logger.info(f"Loading model structure and parameters from {path}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


def attach_user_histories(split, histories) -> None:
    """RecBole's split objects have no field for each user's whole sequence, which ``eval_exclude_seen`` needs at
    evaluation; it rides on the split as ``user_histories`` (added data, nothing of RecBole's replaced), read back
    with ``getattr(split, "user_histories", None)``."""
    split.user_histories = histories
