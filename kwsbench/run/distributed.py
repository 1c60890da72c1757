"""Sharded runs under torchrun: which rank computes which cell, and the control messages between ranks.

`torchrun --nproc-per-node N -m kwsbench run ...` starts N copies of the run command. Rank 0 predicts what
each cell costs (kwsbench.run.estimate) and deals the cells out with `balance`; every rank computes its own
cells into a shard store of its own (SQLite tolerates one writer per file), and after a barrier rank 0 merges
every shard into the one store. Because the noise of a cell is a
pure function of (utterance, source, seed) and the batches are the same, the merged store equals a
single-process run cell for cell. A rank that dies leaves its shard behind; the next run (any world size)
merges such leftovers first, so `--resume` only computes what is missing.

Control messages (run id, summaries) go over a gloo group, also when the tensors live on CUDA (nccl).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from kwsbench.errors import BadInputError

# test hook: "RANK:K" makes that rank exit abruptly after storing K cells (simulates a crashed worker)
EXIT_AFTER_ENV = "KWSBENCH_TEST_EXIT_AFTER_CELLS"
# "cost" (default): cells dealt by `balance`; "round-robin": cell i to rank i mod N (kept to measure the two)
DEAL_ENV = "KWSBENCH_SHARD_DEAL"
DEALS = ("cost", "round-robin")


def deal_from_env() -> str:
    deal = os.environ.get(DEAL_ENV, "").strip() or "cost"
    if deal not in DEALS:
        raise BadInputError(f"environment variable {DEAL_ENV}={deal!r} must be one of {', '.join(DEALS)} (how a "
                            "torchrun run deals its cells to the ranks); set it to cost, or unset it")
    return deal


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    owners: tuple[int, ...] | None = None  # the rank of each cell of the plan (from `balance`); None: round-robin

    @property
    def sharded(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, index: int) -> bool:
        """Cell `index` of the plan (model m, condition j -> m * conditions + j) is this rank's: by the dealt
        owners, else round-robin over the sorted plan."""
        if self.owners is not None:
            return self.owners[index] == self.rank
        return index % self.world == self.rank


def balance(costs: Sequence[Sequence[float]], model_overhead: float, world: int) -> list[int]:
    """The rank of every cell (row-major over costs[model][condition], seconds each), so that the busiest
    rank finishes early while few models are loaded on more than one rank.

    Every rank that runs any cell of a model pays `model_overhead` for it (building and loading it, the first
    forward, CUDA graph capture). Round-robin over model x condition made every rank load every model and,
    on a plan of few cells, could give one rank all of a slow model. Here whole models go first, longest
    first, to the least loaded rank (LPT scheduling); then single cells move from the busiest rank to the
    least busy one (paying the overhead where that rank lacks the model) as long as a move shortens the
    longer of the two. Pure and deterministic: the same costs give the same owners on every rank.
    """
    flat = [(m, c) for m, row in enumerate(costs) for c in row]
    if world <= 1:
        return [0] * len(flat)
    models = len(costs)
    owners = [0] * len(flat)
    load = [0.0] * world
    count = [[0] * models for _ in range(world)]  # cells of model m on rank r
    groups: list[dict[tuple[int, float], list[int]]] = [{} for _ in range(world)]  # (model, cost) -> cells

    def put(i: int, r: int) -> None:
        m, c = flat[i]
        load[r] += c + (model_overhead if count[r][m] == 0 else 0.0)
        count[r][m] += 1
        owners[i] = r
        groups[r].setdefault((m, c), []).append(i)

    def take(i: int, r: int) -> None:
        m, c = flat[i]
        count[r][m] -= 1
        load[r] -= c + (model_overhead if count[r][m] == 0 else 0.0)
        cells = groups[r][(m, c)]
        cells.remove(i)
        if not cells:
            del groups[r][(m, c)]

    starts = [sum(len(row) for row in costs[:m]) for m in range(models)]
    totals = [model_overhead + sum(row) for row in costs]
    for m in sorted(range(models), key=lambda m: (-totals[m], m)):
        r = min(range(world), key=lambda r: (load[r], r))
        for i in range(starts[m], starts[m] + len(costs[m])):
            put(i, r)
    for _ in range(4 * len(flat)):  # each move shortens the busiest rank's pair; the bound only guards
        a = max(range(world), key=lambda r: (load[r], -r))
        b = min(range(world), key=lambda r: (load[r], r))
        best: tuple[float, int] | None = None
        for (m, c), cells in sorted(groups[a].items()):
            peak = max(load[a] - c - (model_overhead if count[a][m] == 1 else 0.0),
                       load[b] + c + (model_overhead if count[b][m] == 0 else 0.0))
            if peak < load[a] - 1e-9 and (best is None or peak < best[0]):
                best = (peak, cells[-1])
        if best is None:
            break
        take(best[1], a)
        put(best[1], b)
    return owners


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
