"""Trainer for LLMMSL: RecBole's Trainer with only what differs overridden.

Overridden: the optimizer (AdamW on the LoRA parameters only), the epoch loop
(micro-batches with exact gradient accumulation, sampled epochs, warmup + linear
decay, clipping, tau logging), the fit loop (a resume checkpoint after every epoch)
and checkpoints (peft adapter folders, no pickle). RecBole's early stopping,
collector and evaluator run unchanged.

Under torchrun every rank trains on its DistributedSampler share; the LoRA gradients and
loss-position counts are summed over ranks before the division, so a step equals the
single-process step on the union of the ranks' batches. Evaluation runs on contiguous
shards and the collected rows are gathered in rank order, so metrics equal a
single-process evaluation.
"""

from __future__ import annotations

import math
import os
import random
from time import time

import numpy as np
import torch
import torch.distributed as dist
from recbole.evaluator import Collector
from recbole.trainer import Trainer
from recbole.utils import dict2str, early_stopping, set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from ..checkpoint import load_checkpoint, load_resume_checkpoint, plain, save_checkpoint, save_resume_checkpoint
from ..errors import ConfigError

# Settings a resumed run must share with the run it continues, or it would not be the same run.
RESUME_FINGERPRINT = ("model", "dataset", "seed", "epochs", "train_batch_size", "micro_batch_size",
                      "train_samples_per_epoch", "learner", "learning_rate", "weight_decay", "warmup_ratio",
                      "clip_grad_norm", "llm_loss", "tau", "lora_r", "lora_alpha", "lora_dropout",
                      "lora_target_modules", "eval_step", "stopping_step", "valid_metric", "world_size")
_ROW_KEYS = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")  # one row per evaluated user
_DTYPES = (torch.bool, torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather_rows(local, device):
    """Every rank's rows of one collector tensor, concatenated in rank order (None if no rank has any)."""
    world = dist.get_world_size()
    if local is None:
        meta = torch.tensor([0, 0, -1, 0], dtype=torch.long, device=device)
    else:
        meta = torch.tensor([local.shape[0], local[0].numel() if local.shape[0] else 0,
                             _DTYPES.index(local.dtype), local.dim()], dtype=torch.long, device=device)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta)
    metas = [m.tolist() for m in metas]
    known = [m for m in metas if m[2] >= 0]
    if not known:
        return None
    width, dtype, ndim = max(m[1] for m in known), _DTYPES[known[0][2]], known[0][3]
    longest = max(m[0] for m in metas)
    padded = torch.zeros((longest, width), dtype=dtype, device=device)
    if local is not None and local.shape[0]:
        padded[:local.shape[0]] = local.reshape(local.shape[0], -1).to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    rows = torch.cat([part[:m[0]] for part, m in zip(parts, metas)])
    return rows.reshape(-1) if ndim == 1 else rows


class PooledCollector(Collector):
    """RecBole's collector whose data struct holds the rows of every rank (torchrun evaluation)."""

    def get_data_struct(self):
        struct = super().get_data_struct()
        for key in _ROW_KEYS:
            if self.register.need(key):
                local = struct[key] if key in struct else None  # noqa: SIM401 - DataStruct.get raises
                rows = _gather_rows(local, self.device)
                if rows is not None:
                    struct.set(key, rows)
        return struct


def _broadcast_text(text: str, device) -> str:
    """Rank 0's string on every rank (as bytes in a tensor: nothing is pickled)."""
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8, device=device)
    size = torch.tensor([data.numel()], dtype=torch.long, device=device)
    dist.broadcast(size, 0)
    buffer = torch.zeros(int(size), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buffer.copy_(data)
    dist.broadcast(buffer, 0)
    return bytes(buffer.cpu().tolist()).decode("utf-8")


class LLMMSLTrainer(Trainer):
    def __init__(self, config, model):
        distributed = not config["single_spec"]
        # RecBole would wrap the whole model in DDP with CUDA device ids (and broadcast every
        # frozen weight); only the LoRA gradients need syncing, which _sync_gradients does.
        config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = not distributed
        self.distributed = distributed and _distributed()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.saved_model_file = os.path.splitext(self.saved_model_file)[0]  # a folder, not a .pth
        if self.distributed:
            self.saved_model_file = _broadcast_text(self.saved_model_file, self.device)  # rank 0's time stamp
            self.eval_collector = PooledCollector(config)
            self._broadcast_trainable()
        self.micro_batch_size = self._positive(config, "micro_batch_size")
        self.samples_per_epoch = config["train_samples_per_epoch"]
        if self.samples_per_epoch is not None:
            self._positive(config, "train_samples_per_epoch")
        if config["train_batch_size"] % self.world_size:
            raise ConfigError(f"train_batch_size {config['train_batch_size']} is not a multiple of the "
                              f"{self.world_size} processes; pick a multiple so the effective batch stays exact")
        self.warmup_ratio = float(config["warmup_ratio"] or 0.0)
        self.scheduler = None
        self.global_step = 0
        self.valid_step = 0
        self.stopped = False
        self.tau_trace: list[dict] = []  # per optimizer step: the tau it used and, under ATS, the estimate

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

    def _broadcast_trainable(self):
        """Rank 0's LoRA initialisation on every rank (each rank seeds with seed + rank)."""
        with torch.no_grad():
            for param in self._trainable():
                dist.broadcast(param.data, 0)

    # ------------------------------------------------------------------ training
    def _epoch_budget(self, train_data) -> int:
        """Sequences this rank trains on per epoch: ``train_samples_per_epoch`` split over the ranks."""
        available = len(train_data.sampler) if self.distributed else train_data.sample_size
        wanted = math.ceil(self.samples_per_epoch / self.world_size) if self.samples_per_epoch else available
        return min(wanted, available)

    def _sync_gradients(self, total: float, positions: int) -> tuple[float, int]:
        """Sum LoRA gradients, loss sums and position counts over ranks (exact all-reduce, no DDP hooks)."""
        params = self._trainable()
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        for param, chunk in zip(params, flat.split([p.numel() for p in params])):
            param.grad.copy_(chunk.view_as(param.grad))
        counts = torch.tensor([total, float(positions)], dtype=torch.float64, device=self.device)
        dist.all_reduce(counts)
        return float(counts[0]), int(counts[1])

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor)
        return tensor

    def _optimizer_step(self, interaction) -> float:
        """One effective batch: gradients of the summed micro-batch losses (over all ranks), divided by the
        global number of loss positions, equal the gradient of the full-batch mean exactly."""
        self.optimizer.zero_grad(set_to_none=True)
        total, positions = 0.0, 0
        for start in range(0, len(interaction), self.micro_batch_size):
            loss_sum, count = self.model.loss_terms(interaction[start:start + self.micro_batch_size])
            loss_sum.backward()
            total += float(loss_sum.detach())
            positions += count
        if self.distributed:
            total, positions = self._sync_gradients(total, positions)
        ats = self.model.end_ats_step(self._all_reduce if self.distributed else None)
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
            self.tau_trace.append({"step": self.global_step, **ats})
            for key, value in ats.items():
                self.tensorboard.add_scalar(f"ATS/{key}", value, self.global_step)
        return loss

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """Train on ``train_samples_per_epoch`` shuffled sequences; return the mean loss per step."""
        self.model.train()
        if self.distributed and train_data.shuffle:
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
        self.logger.info(f"epoch {epoch_idx}: {len(losses)} optimizer steps on {seen * self.world_size} sequences, "
                         f"lr {self.scheduler.get_last_lr()[0]:.3g}"
                         + "".join(f", {k} {v}" for k, v in self._tau_note().items()))
        return sum(losses) / max(len(losses), 1)

    def _tau_note(self) -> dict:
        return {"tau": f"{self.model.tau:.4f}"} if self.model.opts.loss == "msl" else {}

    # ----------------------------------------------------------------- fit loop
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's epoch loop plus a resume checkpoint (``<saved>-last``) after every epoch."""
        per_step = train_data.step  # this rank's share of train_batch_size
        steps_per_epoch = math.ceil(self._epoch_budget(train_data) / per_step)
        total = max(steps_per_epoch * self.epochs, 1)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, round(self.warmup_ratio * total), total)
        if self.config["resume"]:
            self.resume_checkpoint(self.config["resume"], train_data)
        self.eval_collector.data_collect(train_data)
        for epoch_idx in range(self.start_epoch, self.epochs):
            if self.stopped:
                break
            start = time()
            train_loss = self._train_epoch(train_data, epoch_idx, show_progress=show_progress)
            self.train_loss_dict[epoch_idx] = train_loss
            if verbose:
                self.logger.info(self._generate_train_loss_output(epoch_idx, start, time(), train_loss))
            self._add_train_loss_to_tensorboard(epoch_idx, train_loss)
            self.wandblogger.log_metrics({"epoch": epoch_idx, "train_loss": train_loss, "train_step": epoch_idx},
                                         head="train")
            self.stopped = self._validate(epoch_idx, valid_data, verbose, saved, show_progress, callback_fn)
            if saved:
                self._save_resume_checkpoint(epoch_idx, train_data)
        self._add_hparam_to_tensorboard(self.best_valid_score)
        return self.best_valid_score, self.best_valid_result

    def _validate(self, epoch_idx, valid_data, verbose, saved, show_progress, callback_fn) -> bool:
        """Validate when due, update early stopping and save the best adapter; True means stop."""
        if self.eval_step <= 0 or not valid_data:
            if saved:
                self._save_checkpoint(epoch_idx, verbose=verbose)
            return False
        if (epoch_idx + 1) % self.eval_step:
            return False
        start = time()
        score, result = self._valid_epoch(valid_data, show_progress=show_progress)
        self.best_valid_score, self.cur_step, stop, update = early_stopping(
            score, self.best_valid_score, self.cur_step, max_step=self.stopping_step, bigger=self.valid_metric_bigger)
        if verbose:
            self.logger.info(set_color("epoch %d evaluating", "green") % epoch_idx
                             + f" [{set_color('time', 'blue')}: {time() - start:.2f}s, "
                             + f"{set_color('valid_score', 'blue')}: {score:f}]")
            self.logger.info(set_color("valid result", "blue") + ": \n" + dict2str(result))
        self.tensorboard.add_scalar("Vaild_score", score, epoch_idx)
        self.wandblogger.log_metrics({**result, "valid_step": self.valid_step}, head="valid")
        self.valid_step += 1
        if update:
            if saved:
                self._save_checkpoint(epoch_idx, verbose=verbose)
            self.best_valid_result = result
        if callback_fn:
            callback_fn(epoch_idx, score)
        if stop and verbose:
            self.logger.info(f"Finished training, best eval result in epoch {epoch_idx - self.cur_step * self.eval_step}")
        return stop

    # -------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        folder = kwargs.pop("saved_model_file", self.saved_model_file)
        if self.rank == 0:
            save_checkpoint(self.model, folder, self._model_state(epoch))
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {folder}")
        if self.distributed:
            dist.barrier()  # no rank reads the folder before rank 0 has renamed it into place

    def _model_state(self, epoch) -> dict:
        return {
            "model": self.config["model"],
            "dataset": self.config["dataset"],
            "epoch": epoch,
            "global_step": self.global_step,
            "best_valid_score": self.best_valid_score,
            "other_parameter": self.model.other_parameter(),
            "tau_trace": self.tau_trace,
            "overrides": {k: v for k, v in self.config.external_config_dict.items() if k != "resume"},
        }

    @property
    def resume_folder(self) -> str:
        return self.saved_model_file + "-last"

    def _fingerprint(self) -> dict:
        return {key: plain(self.world_size if key == "world_size" else self.config[key]) for key in RESUME_FINGERPRINT}

    def _save_resume_checkpoint(self, epoch, train_data):
        """Everything needed to continue after ``epoch`` as if never stopped, in ``<saved>-last``."""
        tensors = self._rng_tensors(train_data)
        optimizer = self.optimizer.state_dict()
        scalars = {}
        for index, slots in optimizer["state"].items():
            for name, value in slots.items():
                if torch.is_tensor(value):
                    tensors[f"optimizer.{index}.{name}"] = value
                else:
                    scalars.setdefault(str(index), {})[name] = value
        trainer_state = {
            "epoch": epoch,
            "global_step": self.global_step,
            "cur_step": self.cur_step,
            "valid_step": self.valid_step,
            "stopped": self.stopped,
            "best_valid_score": self.best_valid_score,
            "best_valid_result": dict(self.best_valid_result) if self.best_valid_result is not None else None,
            "best_model": self.saved_model_file,
            "best_model_saved": os.path.isdir(self.saved_model_file),
            "train_loss_dict": {str(k): v for k, v in self.train_loss_dict.items()},
            "tau_trace": self.tau_trace,
            "scheduler": self.scheduler.state_dict(),
            "optimizer_groups": optimizer["param_groups"],
            "optimizer_scalars": scalars,
            "fingerprint": self._fingerprint(),
        }
        if self.rank == 0:
            save_resume_checkpoint(self.model, self.resume_folder, self._model_state(epoch), trainer_state, tensors)
            self.logger.info(set_color("Saving resume state", "blue") + f": {self.resume_folder}")
        if self.distributed:
            dist.barrier()

    def _rng_tensors(self, train_data) -> dict:
        """This rank's RNG states (python, numpy, torch, cuda, the loader's shuffle generator) as tensors of
        every rank, gathered so rank 0 can write them all."""
        version, words, gauss = random.getstate()
        _, keys, pos, has_gauss, cached = np.random.get_state()
        local = {
            "python": torch.tensor(list(words), dtype=torch.int64),
            "python_gauss": torch.tensor([gauss is None, gauss or 0.0, version], dtype=torch.float64),
            "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "numpy_meta": torch.tensor([pos, has_gauss, cached], dtype=torch.float64),
            "torch": torch.get_rng_state(),
            "loader": train_data.generator.get_state(),
        }
        if torch.cuda.is_available():
            local["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        if not self.distributed:
            return {f"rng.0.{name}": value for name, value in local.items()}
        gathered = {}
        for name, value in local.items():
            parts = [torch.empty_like(value.to(self.device)) for _ in range(self.world_size)]
            dist.all_gather(parts, value.to(self.device))
            gathered.update({f"rng.{rank}.{name}": part.cpu() for rank, part in enumerate(parts)})
        return gathered

    def _restore_rng(self, tensors: dict, train_data) -> None:
        """Put this rank's RNG states back, so dropout and the next epoch's shuffle continue unchanged."""
        def get(name):
            return tensors[f"rng.{self.rank}.{name}"]

        gauss = get("python_gauss").tolist()
        random.setstate((int(gauss[2]), tuple(int(w) for w in get("python").tolist()),
                         None if gauss[0] else gauss[1]))
        pos, has_gauss, cached = get("numpy_meta").tolist()
        np.random.set_state(("MT19937", get("numpy").numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
        torch.set_rng_state(get("torch"))
        train_data.generator.set_state(get("loader"))
        if torch.cuda.is_available() and f"rng.{self.rank}.cuda" in tensors:
            torch.cuda.set_rng_state_all(list(get("cuda")))

    def resume_checkpoint(self, resume_file, train_data=None):
        """Continue a run from its ``-last`` folder: weights, tau, optimizer, scheduler, counters, RNG."""
        folder = os.path.abspath(str(resume_file))
        state, tensors = load_resume_checkpoint(folder)
        try:
            self._check_fingerprint(folder, state["fingerprint"])
            if f"rng.{self.rank}.torch" not in tensors:
                raise ConfigError(f"cannot resume from {folder}: it holds no state for rank {self.rank}; "
                                  f"resume with the number of processes it was saved with")
            load_checkpoint(self.model, folder)
            self._load_optimizer(state, tensors)
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_epoch = int(state["epoch"]) + 1
            self.global_step, self.cur_step = int(state["global_step"]), int(state["cur_step"])
            self.valid_step, self.stopped = int(state["valid_step"]), bool(state["stopped"])
            self.best_valid_score = float(state["best_valid_score"])
            self.best_valid_result = state["best_valid_result"]
            self.train_loss_dict = {int(k): v for k, v in state["train_loss_dict"].items()}
            self.tau_trace = [dict(record) for record in state["tau_trace"]]
            self.saved_model_file = state["best_model"]
            if state["best_model_saved"] and not os.path.isdir(self.saved_model_file):
                raise ConfigError(f"the best-model folder {self.saved_model_file} named by {folder} is missing; "
                                  f"put it back or start a new run without --resume")
            if train_data is not None:
                self._restore_rng(tensors, train_data)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"cannot resume from {folder}: its training state does not fit this run "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                              f"resume with the settings it was saved with or start a new run") from None
        self.logger.info(f"Resuming from {folder}: epoch {self.start_epoch}, step {self.global_step}, "
                         f"tau {self.model.tau}")

    def _check_fingerprint(self, folder: str, saved: dict) -> None:
        now = self._fingerprint()
        for key, value in now.items():
            if key in saved and saved[key] != value:
                raise ConfigError(f"cannot resume from {folder}: it was trained with {key}={saved[key]!r}, "
                                  f"this run has {key}={value!r}; resume with the original settings")

    def _load_optimizer(self, state: dict, tensors: dict) -> None:
        current = self.optimizer.state_dict()
        slots: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                slots.setdefault(int(index), {})[name] = value
        for index, values in state["optimizer_scalars"].items():
            slots.setdefault(int(index), {}).update(values)
        groups = []
        for saved, now in zip(state["optimizer_groups"], current["param_groups"], strict=True):
            groups.append({k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in saved.items()})
        self.optimizer.load_state_dict({"state": slots, "param_groups": groups})

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            folder = model_file or self.saved_model_file
            load_checkpoint(self.model, folder)
            self.logger.info(f"Loading LoRA adapter and tau from {folder}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _map_reduce(self, result, num_sample):
        """The PooledCollector already gave every rank all rows: the metrics are global as they are."""
        return result
