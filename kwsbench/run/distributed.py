"""Sharded runs under torchrun: which rank computes which cell, and the control messages between ranks.

`torchrun --nproc-per-node N -m kwsbench run ...` starts N copies of the run command. Each rank takes the
cells whose index in the sorted plan (models x conditions, the order a single process uses) is congruent to
its rank modulo the world size, writes them to a shard store of its own (SQLite tolerates one writer per
file), and after a barrier rank 0 merges every shard into the one store. Because the noise of a cell is a
pure function of (utterance, source, seed) and the batches are the same, the merged store equals a
single-process run cell for cell. A rank that dies leaves its shard behind; the next run (any world size)
merges such leftovers first, so `--resume` only computes what is missing.

Control messages (run id, summaries) go over a gloo group, also when the tensors live on CUDA (nccl).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

# test hook: "RANK:K" makes that rank exit abruptly after storing K cells (simulates a crashed worker)
EXIT_AFTER_ENV = "KWSBENCH_TEST_EXIT_AFTER_CELLS"


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def sharded(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, index: int) -> bool:
        """Round-robin over the sorted plan: stable, needs no model loaded, balances conditions per model."""
        return index % self.world == self.rank


_control_group: Any = None


def world_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env(device: str) -> tuple[Shard, str]:
    """Join the torchrun job if there is one; returns this rank's shard and the device it should use."""
    global _control_group
    world = world_from_env()
    if world <= 1:
        return Shard(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    _control_group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    return Shard(rank=rank, world=world), device


def shutdown() -> None:
    global _control_group
    if dist.is_initialized():
        dist.destroy_process_group()
    _control_group = None


def barrier(shard: Shard) -> None:
    if shard.sharded:
        dist.barrier(group=_control_group)


def broadcast(shard: Shard, value: Any) -> Any:
    """Rank 0's value on every rank."""
    if not shard.sharded:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control_group)
    return box[0]


def gather(shard: Shard, value: Any) -> list[Any]:
    """Every rank's value, in rank order, on every rank."""
    if not shard.sharded:
        return [value]
    out: list[Any] = [None] * shard.world
    dist.all_gather_object(out, value, group=_control_group)
    return out


def shard_store_path(store: str | Path, rank: int) -> Path:
    store = Path(store)
    return store.with_name(f"{store.name}.shard-{rank}.sqlite")


def leftover_shards(store: str | Path) -> list[Path]:
    """Shard stores next to the store (from this run, or from a run whose ranks died)."""
    store = Path(store)
    return sorted(store.parent.glob(f"{store.name}.shard-*.sqlite"))


def exit_after(rank: int) -> int | None:
    """The number of cells after which this rank must exit (test hook), or None."""
    spec = os.environ.get(EXIT_AFTER_ENV, "")
    if ":" not in spec:
        return None
    who, count = spec.split(":", 1)
    return int(count) if int(who) == rank else None
