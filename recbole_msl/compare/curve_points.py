"""What every learning-curve run shares: its signatures, how one point is measured, and the record written after
every change (so a stop keeps every measured point and the CPU time spent)."""

from __future__ import annotations

import os
import time

from ..core.random_states import kept_random_states
from ..evaluation.records import ranked_hits
from ..files import write_json
from .curve_schedule import trained_sequences
from .curve_stats import point_stats

# Keys that shape training only. The untrained model is the backbone itself (LoRA's B starts at zero, whatever
# its rank, scale, dropout or target layers, and full fine-tuning starts from the backbone), and evaluation uses
# neither the loss nor tau nor the optimizer nor how training batches are cut, so runs whose configurations differ
# only in these keys share one measurement of point 0 (a whole validation pass saved per run).
TRAINING_ONLY_KEYS = frozenset({"llm_loss", "tau", "ats_tau_init", "ats_eta", "ats_alpha", "ats_range",
                                "learning_rate", "weight_decay", "warmup_ratio", "lora_r", "lora_alpha",
                                "lora_dropout", "lora_target_modules", "llm_finetune", "train_samples_per_epoch",
                                "train_batch_size", "micro_batch_size"})


def curve_signature(run, dataset: str, seed: int, points: list[int], cmd_args: list[str]) -> str:
    """A curve run's signature: its settings and the sequences it trains at each positive point."""
    return run.signature(dataset, seed, list(cmd_args) + [_trained_at(run, points)])


def curve_training_signature(run, dataset: str, seed: int, points: list[int], cmd_args: list[str]) -> str | None:
    """What a curve run's training depends on: its signature without decoding keys (None without an LLM term)."""
    return run.training_signature(dataset, seed, list(cmd_args) + [_trained_at(run, points)])


def _trained_at(run, points: list[int]) -> str:
    return f"curve={[trained_sequences(p, run.cost) for p in points if p > 0]}"


def untrained_signature(run, dataset: str, seed: int, cmd_args: list[str]) -> str:
    """What point 0 of a run depends on: its signature without its name and training-only keys."""
    return run.signature_without(TRAINING_ONLY_KEYS, dataset, seed, list(cmd_args))


def adapter_folder(folder: str, run_name: str, seed: int) -> str:
    """Where a curve run keeps its checkpoints: the adapter of its last point, and ``-last`` to resume from."""
    return os.path.join(folder, "curves", f"{run_name}--seed{seed}")


def measure_point(trainer, model, valid_data, sequences: int, epoch: int) -> dict:
    """One point: validation metrics, each user's ranked hits and per-user statistics, tau, and the CPU and wall
    seconds of this validation (``valid_cpu_s``, ``valid_wall_s``: a point's ``cpu_s`` counts every validation so
    far, so the training's own CPU time is ``cpu_s`` less their sum)."""
    cpu, wall = time.process_time(), time.perf_counter()
    valid = {k: float(v) for k, v in trainer.evaluate(valid_data, load_best_model=False).items()}
    hits = ranked_hits(valid_data, trainer.last_topk)
    return {"sequences": sequences, "epoch": epoch, "valid": valid, "stats": point_stats(hits),
            "tau": float(model.tau), "valid_hits": hits, "valid_cpu_s": time.process_time() - cpu,
            "valid_wall_s": time.perf_counter() - wall}


def untrained_point(trainer, model, valid_data, train_data, measure=measure_point) -> dict:
    """The point at 0 sequences: the backbone with its fresh LoRA adapter (B = 0, so exactly the
    backbone), measured before training or resuming. The RNG states are restored afterwards so the
    training that follows is the same with or without this point."""
    with kept_random_states():
        trainer.eval_collector.data_collect(train_data)  # what trainer.start does before any evaluation
        return measure(trainer, model, valid_data, 0, 0)


class PointLog:
    """A curve run's record, written after every change with the CPU and wall seconds spent so far (earlier
    attempts' recorded time plus this process's), so a stop keeps every point measured."""

    def __init__(self, record: dict, path: str, echo, seed: int):
        self.record, self.path, self.echo, self.seed = record, path, echo, seed
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        self.spent_cpu, self.spent_wall = record.get("cpu_s", 0.0), record.get("wall_s", 0.0)

    def measured(self) -> set[int]:
        return {p["sequences"] for p in self.record["points"]}

    def save(self, point: dict | None = None) -> None:
        """Write the record, with ``point`` added (stamped with the time spent so far) when given."""
        cpu, wall = time.process_time() - self.cpu, time.perf_counter() - self.wall
        if point is not None:  # the untrained point comes first even when added to a finished curve
            before_cpu, before_wall = (0.0, 0.0) if point["sequences"] == 0 else (self.spent_cpu, self.spent_wall)
            point.update(cpu_s=before_cpu + cpu, wall_s=before_wall + wall)
            self.record["points"] = sorted([*self.record["points"], point], key=lambda p: p["sequences"])
            self._echo(point)
        self.record.update(cpu_s=self.spent_cpu + cpu, wall_s=self.spent_wall + wall)
        write_json(self.path, self.record)

    def take_untrained(self, run, shared: dict | None, measure_untrained) -> None:
        """Point 0: ``shared`` (another run's measurement with the same :func:`untrained_signature`, copied with
        the run it came from) or, without one, ``measure_untrained()``."""
        if shared is not None:
            self.echo(f"curve {run.name} seed {self.seed}: the untrained point is {shared['run']}'s (same backbone "
                      f"and evaluation; the runs differ only in training keys)")
            self.save({**shared["point"], "measured_in": shared["run"]})
        else:
            self.save(measure_untrained())

    def _echo(self, point: dict) -> None:
        stats = point["stats"]
        self.echo(f"curve {self.record['run']} seed {self.seed}: {point['sequences']} sequences, valid NDCG@10 "
                  f"{stats['ndcg@10']['mean']:.4f} ± {stats['ndcg@10']['se']:.4f}, Hit@10 "
                  f"{stats['hit@10']['mean']:.4f} ± {stats['hit@10']['se']:.4f} ({stats['users']} users)")
