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
  reads them with ``weights_only=True``.
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
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from .files import unique_path, write_atomic

_NUMPY_ALIASES = {"bool": np.bool_, "int": np.int_, "float": np.float64, "complex": np.complex128,
                  "object": np.object_, "str": np.str_, "long": np.int_, "unicode": np.str_}


def install_numpy_aliases() -> None:
    """Provide the numpy 1.x aliases RecBole code still uses, without touching existing names."""
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def quiet_recbole_pandas_warnings() -> None:
    """pandas 2 warns on every load about RecBole's chained fillna; it still works there (hence the pin)."""
    warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def atomic_torch_save(obj, path: str) -> None:
    """torch.save through :func:`recbole_msl.files.write_atomic`: never a half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


class SafeCheckpointMixin:
    """For RecBole's own trainers: plain-data checkpoints that ``torch.load(weights_only=True)`` reads,
    under a name no other run uses (RecBole's is only unique to the second)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = unique_path(self.saved_model_file)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": {"model": self.config["model"], "dataset": self.config["dataset"]},
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        atomic_torch_save(state, path)
        if verbose:
            self.logger.info(f"Saving current: {path}")

    def _load_checkpoint(self, path):
        checkpoint = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        return checkpoint

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            path = model_file or self.saved_model_file
            self._load_checkpoint(path)
            self.logger.info(f"Loading model structure and parameters from {path}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
