"""Where LLMMSL's trainer writes: the best adapter folder, the ``-last`` resume folder after every epoch, and the
one-line message naming what survives when a disk fills or a run stops on an error."""

from __future__ import annotations

import os

import torch.distributed as dist
from recbole.utils import set_color

from .. import distributed
from ..checkpoint import save_checkpoint
from ..errors import ConfigError, disk_write_error
from . import resume

# path options stored absolute in a checkpoint's state, so it loads the same files from any working directory
PATH_OPTIONS = ("data_path", "llm_path", "gguf_cache_dir", "checkpoint_dir")


class CheckpointSavingMixin:
    """The trainer's saving: needs ``model``, ``config``, ``saved_model_file``, ``rank``, ``distributed``, ``device``
    and the counters the resume state records."""

    def _kept_resume_folder(self) -> str:
        """Where the work done so far is safe, for the message of a run that stops on an error."""
        try:
            state, _ = resume.load_resume_checkpoint(self.resume_folder)
        except ConfigError:
            return "no resume folder was written yet (no epoch finished)"
        after = f"after epoch {state['epoch']}" + ("" if state.get("validated", True) else ", before its validation")
        return f"the last good resume folder, {self.resume_folder} ({after}), is kept"

    def _disk_error(self, err: OSError, what: str):
        """A full or unwritable disk while saving: one line naming the folder, and what survives."""
        error = disk_write_error(err, what, "set --checkpoint_dir to a disk with space; "
                                 + self._kept_resume_folder().replace("last good", "last complete"), show_file=False)
        return error or err


    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        folder = kwargs.pop("saved_model_file", self.saved_model_file)
        if self.rank == 0:
            try:
                save_checkpoint(self.model, folder, self._model_state(epoch))
            except OSError as err:
                raise self._disk_error(err, f"the best adapter {folder}") from None
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {folder}")
        if self.distributed:
            dist.barrier()  # no rank reads the folder before rank 0 has renamed it into place

    def _model_state(self, epoch) -> dict:
        overrides = {k: v for k, v in self.config.external_config_dict.items() if k != "resume"}
        for key in PATH_OPTIONS:  # as given they were relative to the training directory
            value = overrides.get(key)
            if isinstance(value, str) and value and not os.path.isabs(value) and os.path.exists(value):
                overrides[key] = os.path.abspath(value)
        return {"model": self.config["model"], "dataset": self.config["dataset"], "epoch": epoch,
                "global_step": self.global_step, "best_valid_score": self.best_valid_score,
                "other_parameter": self.model.other_parameter(), "tau_trace": self.tau_trace, "overrides": overrides,
                "data": self.data_identity, "backbone": self.model.backbone_fingerprint}

    @property
    def resume_folder(self) -> str:
        return self.saved_model_file + "-last"

    def _save_resume_checkpoint(self, epoch, train_data, validated: bool = True):
        """Everything needed to continue after ``epoch`` as if never stopped, in ``<saved>-last``
        (``validated=False``: after the epoch's training, before its validation)."""
        rng = resume.rng_tensors(train_data.generator)
        rng = distributed.gather_tensors(rng, self.device) if self.distributed else {f"0.{k}": v for k, v in rng.items()}
        state, tensors = resume.trainer_state(self, epoch, validated)
        tensors.update({f"rng.{k}": v for k, v in rng.items()})
        if self.rank == 0:
            try:
                resume.save_resume_checkpoint(self.model, self.resume_folder, self._model_state(epoch), state,
                                              tensors)
            except OSError as err:
                raise self._disk_error(err, f"the resume state {self.resume_folder}") from None
            self.logger.info(set_color("Saving resume state", "blue") + f": {self.resume_folder}")
        if self.distributed:
            dist.barrier()
