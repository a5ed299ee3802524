"""Joining torchrun's process group: the environment it sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) and the
env:// rendezvous."""

from __future__ import annotations

import os

import torch.distributed as dist

from ..errors import ConfigError, first_line


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def join_process_group(backend: str, rank: int, world: int) -> None:
    """torch.distributed's env:// rendezvous (MASTER_ADDR/MASTER_PORT, as torchrun sets them), once per process."""
    if dist.is_initialized():
        return
    try:
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot join the {backend} process group ({first_line(err)}); launch with "
                          f"torchrun --nproc_per_node=N run_recbole_msl.py ... or set --dist_backend") from None
