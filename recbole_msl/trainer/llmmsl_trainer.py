"""Trainer for LLMMSL: RecBole's Trainer with only what differs overridden.

Overridden: the optimizer (AdamW on the LoRA parameters only), the epoch loop
(micro-batches with exact gradient accumulation, sampled epochs, warmup + linear
decay, clipping, tau logging) and checkpoints (peft adapter folders, no pickle).
RecBole's fit loop, early stopping, collector and evaluator run unchanged.
"""

from __future__ import annotations

import math
import os

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import ConfigError


class LLMMSLTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = os.path.splitext(self.saved_model_file)[0]  # a folder, not a .pth
        self.micro_batch_size = self._positive(config, "micro_batch_size")
        self.samples_per_epoch = config["train_samples_per_epoch"]
        if self.samples_per_epoch is not None:
            self._positive(config, "train_samples_per_epoch")
        self.warmup_ratio = float(config["warmup_ratio"] or 0.0)
        self.scheduler = None
        self.global_step = 0
        self.tau_trace: list[tuple[int, float]] = []  # (optimizer step, tau) after each step

    @staticmethod
    def _positive(config, key):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{key} must be a positive integer, not {value!r}")
        return value

    def _trainable(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self._trainable())
        return super()._build_optimizer(**kwargs)

    def _epoch_budget(self, train_data) -> int:
        available = train_data.sample_size
        return min(self.samples_per_epoch or available, available)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        steps_per_epoch = math.ceil(self._epoch_budget(train_data) / self.config["train_batch_size"])
        total = max(steps_per_epoch * self.epochs, 1)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, round(self.warmup_ratio * total), total)
        return super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                           show_progress=show_progress, callback_fn=callback_fn)

    def _optimizer_step(self, interaction) -> float:
        """One effective batch: gradients of the summed micro-batch losses, divided by the number of
        loss positions, equal the gradient of the full-batch mean exactly."""
        self.optimizer.zero_grad(set_to_none=True)
        total, positions = 0.0, 0
        for start in range(0, len(interaction), self.micro_batch_size):
            loss_sum, count = self.model.loss_terms(interaction[start:start + self.micro_batch_size])
            loss_sum.backward()
            total += float(loss_sum.detach())
            positions += count
        for param in self._trainable():
            if param.grad is not None:
                param.grad.div_(max(positions, 1))
        loss = total / max(positions, 1)
        self._check_nan(torch.tensor(loss))
        if self.clip_grad_norm:
            clip_grad_norm_(self._trainable(), **self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        self.tensorboard.add_scalar("Loss/step", loss, self.global_step)
        if self.model.opts.loss == "msl":  # tau means nothing for LML
            self.tau_trace.append((self.global_step, float(self.model.tau)))
            self.tensorboard.add_scalar("tau", float(self.model.tau), self.global_step)
        return loss

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """Train on ``train_samples_per_epoch`` shuffled sequences; return the mean loss per step."""
        self.model.train()
        if not self.config["single_spec"] and train_data.shuffle:
            train_data.sampler.set_epoch(epoch_idx)
        budget, seen, losses = self._epoch_budget(train_data), 0, []
        bar = tqdm(total=budget, ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink")) if show_progress else None
        for interaction in train_data:
            if seen >= budget:
                break
            take = min(len(interaction), budget - seen)
            losses.append(self._optimizer_step(interaction[:take].to(self.device)))
            seen += take
            if bar:
                bar.update(take)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", **self._tau_note())
        if bar:
            bar.close()
        self.logger.info(f"epoch {epoch_idx}: {len(losses)} optimizer steps on {seen} sequences, "
                         f"lr {self.scheduler.get_last_lr()[0]:.3g}"
                         + "".join(f", {k} {v}" for k, v in self._tau_note().items()))
        return sum(losses) / max(len(losses), 1)

    def _tau_note(self) -> dict:
        return {"tau": f"{self.model.tau:.4f}"} if self.model.opts.loss == "msl" else {}

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        folder = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "model": self.config["model"],
            "dataset": self.config["dataset"],
            "epoch": epoch,
            "global_step": self.global_step,
            "best_valid_score": self.best_valid_score,
            "other_parameter": self.model.other_parameter(),
            "tau_trace": self.tau_trace,
            "overrides": self.config.external_config_dict,
        }
        save_checkpoint(self.model, folder, state)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {folder}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            folder = model_file or self.saved_model_file
            load_checkpoint(self.model, folder)
            self.logger.info(f"Loading LoRA adapter and tau from {folder}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
