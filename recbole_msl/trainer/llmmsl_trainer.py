"""Trainer for LLMMSL: RecBole's Trainer with only what differs overridden.

Overridden: the optimizer (AdamW on the LoRA parameters only), the epoch loop
(micro-batches with exact gradient accumulation, sampled epochs, warmup + linear
decay, clipping, tau logging), the fit loop (a resume checkpoint after every epoch)
and checkpoints (peft adapter folders, no pickle). RecBole's early stopping and
evaluator run unchanged; what counts as a hit (never an item no beam reached) and ``eval_exclude_seen``
come from :mod:`recbole_msl.evaluation.protocol`, shared with RecBole's models.

Under torchrun every rank trains on its DistributedSampler share, and a step equals the
single-process step on the union of the ranks' batches; evaluation metrics equal a
single-process evaluation (:mod:`recbole_msl.distributed`). Resume state lives in
:mod:`recbole_msl.trainer.resume`; per-user evaluation records in :mod:`recbole_msl.evaluation.records`.
"""

from __future__ import annotations

import contextlib
import math
import os
from time import time

import torch.distributed as dist
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.trainer import Trainer
from recbole.utils import dict2str, early_stopping, set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from .. import distributed
from ..checkpoint import (
    check_data_identity,
    data_identity,
    load_checkpoint,
    read_adapter,
    read_state,
)
from ..errors import ConfigError, TrainingDivergedError
from ..evaluation.protocol import EvaluationProtocolMixin
from ..evaluation.records import EvaluationRecordMixin
from ..files import run_path
from ..validate import positive_int
from . import resume
from .progress import ProgressLine
from .saving import CheckpointSavingMixin
from .schedule import warmup_then_linear_decay
from .sequence_batches import SequenceExamples
from .weight_grid import AssistantWeightGridMixin


class LLMMSLTrainer(CheckpointSavingMixin, AssistantWeightGridMixin, EvaluationRecordMixin, EvaluationProtocolMixin,
                    Trainer):
    def __init__(self, config, model):
        spec_distributed = not config["single_spec"]
        # RecBole would wrap the whole model in DDP with CUDA device ids (and broadcast every
        # frozen weight); only the LoRA gradients need summing, which distributed.sum_gradients does.
        config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = not spec_distributed
        self.distributed = spec_distributed and distributed.is_distributed()
        self.rank = distributed.rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        # a folder, not a .pth, named <model>-<date>-<tag> like the run's log (quick_start.run picks the tag)
        self.saved_model_file = run_path(config, os.path.splitext(self.saved_model_file)[0])
        if self.distributed:
            self.saved_model_file = distributed.broadcast_text(self.saved_model_file, self.device)  # rank 0's stamp
            self.eval_collector = distributed.PooledCollector(config)
            distributed.broadcast_parameters(self._trainable())  # each rank seeded its own LoRA init
        self.micro_batch_size = positive_int(config["micro_batch_size"], "micro_batch_size")
        self.samples_per_epoch = config["train_samples_per_epoch"]
        if self.samples_per_epoch is not None:
            positive_int(self.samples_per_epoch, "train_samples_per_epoch")
        if config["train_batch_size"] % self.world_size:
            raise ConfigError(f"train_batch_size {config['train_batch_size']} is not a multiple of the "
                              f"{self.world_size} processes; pick a multiple so the effective batch stays exact")
        self.warmup_ratio = float(config["warmup_ratio"] or 0.0)
        self.scheduler, self.global_step, self.valid_step, self.stopped = None, 0, 0, False
        self.tau_trace: list[dict] = []  # per optimizer step: the tau it used and, under ATS, the estimate
        self.data_identity: dict | None = None  # the data the model is trained on (set by start), saved with it
        self.pending_validation: int | None = None  # resumed from a stop during this epoch's validation
        self.epoch_idx = 0  # the epoch being trained, for messages
        self.epochs_done = 0  # epochs trained so far (train_until)
        self.sequences: SequenceExamples | None = None  # train_format sequence: the chunks (built at the start)
        self.train_interactions: str | None = None  # SHA-256 of the training split's rows (set by start)

    def _trainable(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self._trainable())
        return super()._build_optimizer(**kwargs)

    def _sequence_examples(self, train_data) -> SequenceExamples | None:
        """train_format sequence: the training split's chunks, built on first use."""
        if self.sequences is None and self.model.opts.train_format == "sequence":
            self.sequences = SequenceExamples(train_data._dataset, self.model, int(self.config["seed"]), self.rank,
                                              self.world_size, bool(train_data.shuffle))
            self.logger.info(f"train_format sequence: {len(self.sequences.chunks)} chunks of at most "
                             f"{self.model.opts.history_length} titles from {self.sequences.users} users, "
                             f"{self.sequences.targets} target titles per pass (the split has "
                             f"{self.sequences.rows} training rows)")
        return self.sequences

    def _epoch_budget(self, train_data) -> int:
        """Examples this rank trains on per epoch (windows, or chunks in the sequence format):
        ``train_samples_per_epoch`` split over the ranks."""
        sequences = self._sequence_examples(train_data)
        if sequences is not None:
            return sequences.share(self._sequence_epoch_size(sequences))
        available = len(train_data.sampler) if self.distributed else train_data.sample_size
        wanted = math.ceil(self.samples_per_epoch / self.world_size) if self.samples_per_epoch else available
        return min(wanted, available)

    def _sequence_epoch_size(self, sequences: SequenceExamples) -> int:
        """Chunks per epoch, all ranks together: ``train_samples_per_epoch``, at most one pass."""
        return min(self.samples_per_epoch or len(sequences.chunks), len(sequences.chunks))

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
            total, positions = distributed.sum_gradients(self._trainable(), total, positions, self.device)
        ats = self.model.end_ats_step(distributed.all_reduce if self.distributed else None)
        for param in self._trainable():
            if param.grad is not None:
                param.grad.div_(max(positions, 1))
        loss = total / max(positions, 1)
        self._check_finite(loss)
        if self.clip_grad_norm:
            clip_grad_norm_(self._trainable(), **self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        self.tensorboard.add_scalar("Loss/step", loss, self.global_step)
        if self.model.uses_tau:  # tau means nothing for LML
            self.tau_trace.append({"step": self.global_step, **ats})
            for key, value in ats.items():
                self.tensorboard.add_scalar(f"ATS/{key}", value, self.global_step)
        return loss

    def _check_finite(self, loss: float) -> None:
        """A NaN or infinite loss stops the run before the step reaches the weights, with one line naming the step,
        the likely cause and the last good resume folder (which nothing overwrites afterwards)."""
        if math.isfinite(loss):
            return
        dtype = str(next(self.model.llm.parameters()).dtype).replace("torch.", "")
        lr = self.config["learning_rate"]
        if dtype == "float16":
            cause = (f"the likely causes are float16 overflow (llm_dtype {dtype}) or a learning rate too high "
                     f"(learning_rate={lr}): set llm_dtype=bfloat16 or float32, or lower learning_rate")
        else:
            cause = (f"the likely cause is a learning rate too high (learning_rate={lr}; with llm_dtype {dtype} "
                     f"it is no float16 overflow): lower learning_rate, e.g. learning_rate={lr / 10:g}")
        raise TrainingDivergedError(f"the training loss became {loss} at optimizer step {self.global_step + 1} "
                                    f"(epoch {self.epoch_idx}); {cause}; {self._kept_resume_folder()}")

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """Train on ``train_samples_per_epoch`` shuffled sequences; return the mean loss per step."""
        self.epoch_idx = epoch_idx
        self.model.train()
        if self.distributed and train_data.shuffle:
            train_data.sampler.set_epoch(epoch_idx)
        budget, seen, losses = self._epoch_budget(train_data), 0, []
        bar = tqdm(total=budget, ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink")) if show_progress else None
        sequences = self._sequence_examples(train_data)
        line = None if show_progress else ProgressLine(self.logger, f"epoch {epoch_idx}", budget, self._unit(sequences))
        batches = (train_data if sequences is None
                   else sequences.epoch(epoch_idx, self._sequence_epoch_size(sequences), train_data.step))
        for batch in batches:
            if seen >= budget:
                break
            take = min(len(batch), budget - seen)
            batch = batch[:take]
            losses.append(self._optimizer_step(batch if sequences else batch.to(self.device)))
            seen += take
            if bar:
                bar.update(take)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", **self._tau_note())
            else:
                line.update(take)
        if bar:
            bar.close()
        self.logger.info(f"epoch {epoch_idx}: {len(losses)} optimizer steps on {seen * self.world_size} "
                         f"{self._unit(sequences)}, "
                         f"lr {self.scheduler.get_last_lr()[0]:.3g}"
                         + "".join(f", {k} {v}" for k, v in self._tau_note().items()))
        return sum(losses) / max(len(losses), 1)

    @staticmethod
    def _unit(sequences) -> str:
        return "chunks" if sequences else "sequences"

    def _tau_note(self) -> dict:
        return {"tau": f"{self.model.tau:.4f}"} if self.model.uses_tau else {}

    def start(self, train_data) -> None:
        """Before the first epoch: the schedule over all optimizer steps, then the resume state if asked for."""
        per_step = train_data.step  # this rank's share of train_batch_size
        steps_per_epoch = math.ceil(self._epoch_budget(train_data) / per_step)
        total = max(steps_per_epoch * self.epochs, 1)
        self.scheduler = warmup_then_linear_decay(self.optimizer, round(self.warmup_ratio * total), total)
        self.data_identity = data_identity(self.config, train_data._dataset, self.model.titles)
        model = self.model
        self.train_interactions = resume.split_fingerprint(
            train_data._dataset, [train_data._dataset.uid_field, model.ITEM_SEQ, model.ITEM_SEQ_LEN, model.POS_ITEM_ID])
        if self.config["resume"]:
            self.resume_checkpoint(self.config["resume"], train_data)
        self.eval_collector.data_collect(train_data)
        self.epochs_done = self.start_epoch

    def train_until(self, train_data, sequences: int) -> int:
        """Train whole epochs until at least ``sequences`` training sequences have been seen since the start (over
        all processes), saving the resume state after each epoch, then hand control back (a learning curve
        measures in between). Call :meth:`start` first. Returns the epochs trained so far."""
        per_epoch = self._epoch_budget(train_data) * self.world_size
        while self.epochs_done * per_epoch < sequences:
            self._train_epoch(train_data, self.epochs_done)
            self._save_resume_checkpoint(self.epochs_done, train_data)
            self.epochs_done += 1
        return self.epochs_done

    def save_model(self, epoch: int | None = None) -> None:
        """Save the adapter as it is now as the run's model (``saved_model_file``)."""
        self._save_checkpoint(self.epochs_done - 1 if epoch is None else epoch, verbose=False)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's epoch loop plus a resume checkpoint (``<saved>-last``) after every epoch.

        Nothing is trained when ``trained_checkpoint`` names an adapter to evaluate (a comparison's run that
        differs from an earlier one only in decoding) or when there is no LLM term (``llm_weight: 0``)."""
        if self.config["trained_checkpoint"] or not self.model.opts.trains_llm:
            return self._take_trained(train_data, valid_data, show_progress)
        self.start(train_data)
        for epoch_idx in range(self.start_epoch, self.epochs):
            if self.stopped:
                break
            if epoch_idx == self.pending_validation:
                self.pending_validation = None
                self.logger.info(f"epoch {epoch_idx} was trained before the stop; validating it")
            else:
                start = time()
                train_loss = self._train_epoch(train_data, epoch_idx, show_progress=show_progress)
                self.train_loss_dict[epoch_idx] = train_loss
                if verbose:
                    self.logger.info(self._generate_train_loss_output(epoch_idx, start, time(), train_loss))
                self._add_train_loss_to_tensorboard(epoch_idx, train_loss)
                self.wandblogger.log_metrics({"epoch": epoch_idx, "train_loss": train_loss, "train_step": epoch_idx},
                                             head="train")
                if saved and self._validation_due(epoch_idx, valid_data):
                    # a stop during validation (a scheduler's time limit) must not cost the epoch's training
                    self._save_resume_checkpoint(epoch_idx, train_data, validated=False)
            self.stopped = self._validate(epoch_idx, valid_data, verbose, saved, show_progress, callback_fn)
            if saved:
                self._save_resume_checkpoint(epoch_idx, train_data)
        self._add_hparam_to_tensorboard(self.best_valid_score)
        return self.best_valid_score, self.best_valid_result

    def _take_trained(self, train_data, valid_data, show_progress):
        """The adapter of ``trained_checkpoint`` (or the untrained one without an LLM term), saved as this run's;
        validated here unless an assistant's weight grid validates it next."""
        source = self.config["trained_checkpoint"]
        if source:
            self.load_trained(train_data, source)
        else:
            self.data_identity = data_identity(self.config, train_data._dataset, self.model.titles)
            self.logger.info("llm_weight is 0: the assistant ranks alone through the trie (no LLM training)")
        self._save_checkpoint(-1, verbose=False)
        if valid_data and not self.model.opts.has_assistant:
            self.best_valid_score, self.best_valid_result = self._valid_epoch(valid_data, show_progress=show_progress)
        return self.best_valid_score, self.best_valid_result

    def load_trained(self, train_data, source: str) -> None:
        """Load the adapter (and tau trace) another run trained, after checking it was trained on this data."""
        self.data_identity = data_identity(self.config, train_data._dataset, self.model.titles)
        source = os.path.abspath(str(source))
        weights = read_adapter(source)
        state = read_state(source)
        check_data_identity(state.get("data"), self.data_identity, f"trained_checkpoint {source}")
        load_checkpoint(self.model, source, weights)
        self.tau_trace = list(state.get("tau_trace") or [])
        self.logger.info(f"evaluating the adapter trained in {source} (no training in this run)")

    def _validation_due(self, epoch_idx, valid_data) -> bool:
        """Every ``eval_step`` epochs and after the last one, so a run shortened by --epochs still picks a model."""
        if self.eval_step <= 0 or not valid_data:
            return False
        return not (epoch_idx + 1) % self.eval_step or epoch_idx + 1 >= self.epochs

    def _validate(self, epoch_idx, valid_data, verbose, saved, show_progress, callback_fn) -> bool:
        """Validate when due, update early stopping and save the best adapter; True means stop."""
        if self.eval_step <= 0 or not valid_data:
            if saved:
                self._save_checkpoint(epoch_idx, verbose=verbose)
            return False
        if not self._validation_due(epoch_idx, valid_data):
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

    def resume_checkpoint(self, resume_file, train_data=None):
        """Continue a run from its ``-last`` folder: weights, tau, optimizer, scheduler, counters, RNG."""
        folder = os.path.abspath(str(resume_file))
        resume.restore_trainer(self, folder, train_data)
        self.logger.info(f"Resuming from {folder}: epoch {self.start_epoch}, step {self.global_step}, "
                         f"tau {self.model.tau}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's evaluation of the best adapter, with a progress bar that counts users, not batches."""
        if load_best_model and eval_data:
            folder = model_file or self.saved_model_file
            load_checkpoint(self.model, folder)
            self.logger.info(f"Loading LoRA adapter and tau from {folder}")
        if not isinstance(eval_data, FullSortEvalDataLoader):  # sampled: RecBole's own bar
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        users = eval_data.sample_size  # this process's shard under torchrun
        with contextlib.ExitStack() as stack:
            if show_progress:
                counter = stack.enter_context(tqdm(total=users, ncols=100, unit="user",
                                                   desc=set_color("Evaluate", "pink"))).update
            else:
                counter = ProgressLine(self.logger, "ranking", users, "users").update
            self.model.on_users_ranked = counter
            try:
                return super().evaluate(eval_data, load_best_model=False)
            finally:
                self.model.on_users_ranked = None

    def _map_reduce(self, result, num_sample):
        """The PooledCollector already gave every rank all rows: the metrics are global as they are."""
        return result
