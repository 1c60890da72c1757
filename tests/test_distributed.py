"""Sharded runs under torchrun (2 CPU processes on gloo) against a single process, and resume after a rank dies.

Uses the small DS-CNN weights the project trains on the embedded synthetic set and 2 clips per class,
so each launch takes seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kwsbench.paths import PROJECT_ROOT
from kwsbench.results.store import Store
from kwsbench.run.distributed import EXIT_AFTER_ENV, Shard, balance, leftover_shards

WEIGHTS = PROJECT_ROOT / "checkpoints" / "synth" / "ds-cnn-s-hello-edge.pt"  # committed: its absence fails
# columns that legitimately differ between two runs of the same grid
VOLATILE = {"run_id", "seconds", "created", "checksum"}  # the checksum covers run id, timing and timestamp too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(tmp_path: Path, store: Path) -> list[str]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"checkpoints:\n  ds-cnn-s-hello-edge: {WEIGHTS}\n")
    return ["run", "--config", str(plan), "--models", "ds-cnn-s-hello-edge", "--noise", "white,pink",
            "--snr", "0", "5", "--per-class", "2", "--store", str(store)]


def _launch(args: list[str], nproc: int, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    # one thread per process in both modes, so the float arithmetic is the same
    env = dict(os.environ, OMP_NUM_THREADS="1", **(extra_env or {}))
    env.pop("WORLD_SIZE", None)
    if nproc == 1:
        cmd = [sys.executable, "-m", "kwsbench", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "kwsbench", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)


def _snapshot(store: Path) -> dict[str, tuple]:
    """Every cell (minus run id / timing / timestamp) and its predictions, keyed by cell key."""
    with Store(store) as st:
        cur = st.conn.execute("SELECT * FROM cells")
        names = [d[0] for d in cur.description]
        out = {}
        for row in cur.fetchall():
            d = dict(zip(names, row, strict=True))
            preds = tuple(st.predictions(d["cell_key"]).tolist())
            out[d["cell_key"]] = (tuple(sorted((k, v) for k, v in d.items() if k not in VOLATILE)), preds)
    return out


def test_round_robin_assignment_is_disjoint_and_complete():
    owners = [[Shard(r, 3).owns(i) for r in range(3)] for i in range(20)]
    assert all(sum(o) == 1 for o in owners)
    assert [o.index(True) for o in owners[:4]] == [0, 1, 2, 0]


def _makespan(costs: list[list[float]], owners: list[int], overhead: float, world: int) -> float:
    flat = [(m, c) for m, row in enumerate(costs) for c in row]
    return max(sum(c for i, (_, c) in enumerate(flat) if owners[i] == r)
               + overhead * len({m for i, (m, _) in enumerate(flat) if owners[i] == r}) for r in range(world))


def _loads(costs: list[list[float]], owners: list[int]) -> int:
    """(rank, model) pairs: how often a model is loaded over all ranks."""
    flat = [m for m, row in enumerate(costs) for _ in row]
    return len({(owners[i], m) for i, m in enumerate(flat)})


def test_balance_deals_every_cell_to_one_rank_and_is_deterministic():
    costs = [[1.0, 2.0, 0.5], [3.0], [0.0, 0.0], [1.0] * 7]
    for world in (1, 2, 3, 8):
        owners = balance(costs, 0.2, world)
        assert len(owners) == 13 and set(owners) <= set(range(world))
        assert owners == balance(costs, 0.2, world)
    shards = [Shard(r, 3, tuple(balance(costs, 0.2, 3))) for r in range(3)]
    assert all(sum(s.owns(i) for s in shards) == 1 for i in range(13))


def test_balance_keeps_small_models_whole_and_splits_a_dominant_one():
    # the whole registry's shape: one model ~20 % of the time, many small ones, 36 conditions
    costs = [[1.0] * 36] + [[0.05] * 36 for _ in range(30)]
    overhead = 0.15
    owners = balance(costs, overhead, 2)
    rr = [i % 2 for i in range(len(owners))]
    # round-robin loads all 31 models on both ranks; dealt, each small model is loaded once
    assert _loads(costs, rr) == 62 and _loads(costs, owners) <= 32
    best = (sum(map(sum, costs)) + 31 * overhead) / 2
    assert _makespan(costs, owners, overhead, 2) <= best * 1.05
    # a model costing more than a rank's share is split over the ranks
    heavy = [[10.0] * 4, [1.0] * 4]
    owners = balance(heavy, 0.1, 2)
    assert set(owners[:4]) == {0, 1}
    assert _makespan(heavy, owners, 0.1, 2) < _makespan(heavy, [i % 2 for i in range(8)], 0.1, 2) + 1e-9


def test_balance_beats_round_robin_when_a_slow_model_lands_on_one_rank():
    # 3 models x 1 condition: round-robin gives rank 0 the slow model and another
    costs = [[10.0], [1.0], [1.0]]
    owners = balance(costs, 0.1, 2)
    assert _makespan(costs, owners, 0.1, 2) == pytest.approx(10.1)
    assert _makespan(costs, [0, 1, 0], 0.1, 2) == pytest.approx(11.2)


@pytest.fixture(scope="module")
def single_store(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("single")
    res = _launch(_args(tmp, tmp / "single.sqlite"), 1)
    assert res.returncode == 0, res.stderr
    snap = _snapshot(tmp / "single.sqlite")
    assert len(snap) == 5 and all(preds for _, preds in snap.values())
    return snap


def test_two_gloo_ranks_equal_a_single_process(single_store, tmp_path):
    store = tmp_path / "sharded.sqlite"
    res = _launch(_args(tmp_path, store), 2)
    assert res.returncode == 0, res.stderr
    assert "5 cells computed" in res.stdout
    assert "over 2 ranks dealt by expected cost" in res.stdout + res.stderr
    assert "ranks: 0: 3 cells in" in res.stdout  # one model: its 5 cells split 3 / 2
    assert not leftover_shards(store)  # merged and removed
    assert _snapshot(store) == single_store


def test_round_robin_dealing_gives_the_same_cells(single_store, tmp_path):
    store = tmp_path / "rr.sqlite"
    res = _launch(_args(tmp_path, store), 2, {"KWSBENCH_SHARD_DEAL": "round-robin"})
    assert res.returncode == 0, res.stderr
    assert "over 2 ranks dealt round-robin" in res.stdout + res.stderr
    assert _snapshot(store) == single_store


def test_a_rank_that_dies_leaves_a_resumable_store(single_store, tmp_path):
    store = tmp_path / "sharded.sqlite"
    res = _launch(_args(tmp_path, store), 2, {EXIT_AFTER_ENV: "1:1"})
    assert res.returncode != 0
    shards = leftover_shards(store)
    assert shards, "the dead rank's shard store should be left behind"
    # rank 1 owns cells 1 and 3 of 5; it stored one before dying
    assert len(_snapshot(shards[-1])) == 1
    resumed = _launch(_args(tmp_path, store), 1)
    assert resumed.returncode == 0, resumed.stderr
    assert "reused from the store" in resumed.stdout
    computed = int(resumed.stdout.split(" cells computed")[0].split()[-1])
    assert computed < 5  # the cells the ranks finished were not recomputed
    assert not leftover_shards(store)
    assert _snapshot(store) == single_store


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL ranks on cuda:0 and cuda:1)")
def test_two_nccl_ranks_on_two_gpus_equal_one_gpu_process(tmp_path):
    single, sharded = tmp_path / "single.sqlite", tmp_path / "sharded.sqlite"
    res = _launch([*_args(tmp_path, single), "--device", "cuda"], 1)
    assert res.returncode == 0, res.stderr
    res = _launch([*_args(tmp_path, sharded), "--device", "cuda"], 2)
    assert res.returncode == 0, res.stderr
    assert "5 cells computed" in res.stdout and not leftover_shards(sharded)
    assert _snapshot(sharded) == _snapshot(single)
