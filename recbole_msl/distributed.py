"""What a torchrun process group adds to training and evaluation, in one place.

Training: every rank keeps the same LoRA weights (rank 0's initialisation is broadcast) and the
LoRA gradients, loss sums, loss-position counts and ATS statistics are summed over ranks before
they are used (an exact all-reduce; no DDP wrapper around the frozen backbone). Evaluation: each
rank ranks a contiguous shard of the users (:func:`shard_split`, used by the data preparation), and the
collected rows are gathered in rank order, so RecBole's evaluator sees every user exactly once, as in one
process.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from .errors import ConfigError
from .evaluation.protocol import ReachedOnlyCollector

_ROW_KEYS = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")  # one row per evaluated user
_DTYPES = (torch.bool, torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def total(count: int, device) -> int:
    """``count`` summed over the ranks (each evaluates its shard of the users): the run's whole count."""
    if not is_distributed():
        return count
    return int(all_reduce(torch.tensor([count], dtype=torch.long, device=device)).item())


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it."""
    dist.all_reduce(tensor)
    return tensor


def broadcast_parameters(params) -> None:
    """Rank 0's values of ``params`` on every rank (each rank seeded its own initialisation)."""
    with torch.no_grad():
        for param in params:
            dist.broadcast(param.data, 0)


def sum_gradients(params, total: float, positions: int, device) -> tuple[float, int]:
    """Sum the gradients of ``params``, the loss sum and the position count over the ranks (one flat all-reduce)."""
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    for param, chunk in zip(params, flat.split([p.numel() for p in params])):
        param.grad.copy_(chunk.view_as(param.grad))
    counts = torch.tensor([total, float(positions)], dtype=torch.float64, device=device)
    dist.all_reduce(counts)
    return float(counts[0]), int(counts[1])


def broadcast_text(text: str, device) -> str:
    """Rank 0's string on every rank (as bytes in a tensor: nothing is pickled)."""
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8, device=device)
    size = torch.tensor([data.numel()], dtype=torch.long, device=device)
    dist.broadcast(size, 0)
    buffer = torch.zeros(int(size), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buffer.copy_(data)
    dist.broadcast(buffer, 0)
    return bytes(buffer.cpu().tolist()).decode("utf-8")


def gather_tensors(local: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """``{"<rank>.<name>": tensor}`` of every rank's equally shaped tensors (e.g. RNG states), on the CPU."""
    gathered = {}
    for name, value in local.items():
        parts = [torch.empty_like(value.to(device)) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, value.to(device))
        gathered.update({f"{r}.{name}": part.cpu() for r, part in enumerate(parts)})
    return gathered


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


class PooledCollector(ReachedOnlyCollector):
    """The plugin's collector whose data struct holds the rows of every rank (torchrun evaluation)."""

    def get_data_struct(self):
        struct = super().get_data_struct()
        for key in _ROW_KEYS:
            if self.register.need(key):
                local = struct[key] if key in struct else None  # noqa: SIM401 - DataStruct.get raises
                rows = _gather_rows(local, self.device)
                if rows is not None:
                    struct.set(key, rows)
        return struct


@contextlib.contextmanager
def single_process_loaders(config):
    """Loaders built inside the block get no DistributedSampler (RecBole adds one, which repeats rows to pad
    the last shard, whenever ``single_spec`` is off): evaluation splits are sharded beforehand instead."""
    previous = config["single_spec"]
    config["single_spec"] = True
    try:
        yield
    finally:
        config["single_spec"] = previous


def shard_split(config, split, phase: str):
    """This process's contiguous share of an evaluation split: rows for a sequential model (one row per ranked
    history), users in id order otherwise (RecBole's full-sort loader groups a user's rows). Gathered in rank
    order (:class:`PooledCollector`), the shards give every row exactly once, in the one-process order."""
    from recbole.utils import ModelType

    world, this = dist.get_world_size(), dist.get_rank()
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        size = len(split)
        rows = torch.arange(size * this // world, size * (this + 1) // world)
    else:
        users = split.inter_feat[split.uid_field]
        ids = torch.unique(users)  # sorted, as the loader orders them
        size = len(ids)
        mine = ids[size * this // world:size * (this + 1) // world]
        rows = torch.isin(users, mine).nonzero().squeeze(1)
    if size < world:
        raise ConfigError(f"the {phase} split has {size} rows for {world} processes; "
                          f"use fewer processes (--nproc_per_node) or more users (eval_max_users)")
    return split.copy(split.inter_feat[rows])
