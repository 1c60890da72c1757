"""Do the leaderboard's "significantly different" pairs keep their order across noise seeds?

For every noisy condition of one clip set measured under several noise seeds: per seed, the pairwise exact
McNemar tests with Benjamini-Hochberg over the condition's pairs (the leaderboard's rank groups); a pair declared
different under seed s *reverses* under seed t when the other model is more accurate there. Also counted: the
plain accuracy order (no test) changing with the seed, and the pairs the seed-pooled leaderboard declares
different reversing in a single seed.

    python benchmarks/rank_reversals.py --store runs/kwsbench.sqlite [--data NAME] [--alpha 0.05]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections import defaultdict

import numpy as np

from kwsbench.results.clipsets import Selection, select
from kwsbench.results.leaderboard import store_correctness, store_labels_of
from kwsbench.results.ranks import pairwise
from kwsbench.results.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--data", help="data-set name or fingerprint prefix (default: every clip set)")
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()
    with Store(args.store, read_only=True) as st:
        cells = [c for c in st.cells() if c.noise != "clean"]  # clean audio does not depend on the noise seed
        labels = store_labels_of(st, cells)
        cells = select(cells, labels, Selection(data=args.data))
        correct = store_correctness(st, cells)
    conds: dict[tuple, dict[int, dict[str, np.ndarray]]] = defaultdict(lambda: defaultdict(dict))
    for c in cells:
        cond = (labels.key(c), c.noise, c.snr_db, c.snr_def, c.rate_hz, c.rate_mode, c.decimation)
        conds[cond][c.seed][c.model] = correct[c.cell_key]
    declared = reversed_ = pooled_declared = pooled_reversed = order_changed = 0
    spreads = []
    for cond, by_seed in sorted(conds.items(), key=lambda kv: str(kv[0])):
        seeds = sorted(by_seed)
        models = sorted(set.intersection(*(set(v) for v in by_seed.values())))
        acc = {s: {m: float(by_seed[s][m].mean()) for m in models} for s in seeds}
        for m in models:
            values = [100 * acc[s][m] for s in seeds]
            spreads.append(max(values) - min(values))
        orders = {tuple(sorted(models, key=lambda m, s=s: -acc[s][m])) for s in seeds}
        order_changed += len(orders) > 1
        for s in seeds:
            for t in pairwise({m: by_seed[s][m] for m in models}, args.alpha):
                if not t.different:
                    continue
                hi, lo = (t.a, t.b) if t.acc_a > t.acc_b else (t.b, t.a)
                for other in seeds:
                    if other != s:
                        declared += 1
                        if acc[other][lo] > acc[other][hi]:
                            reversed_ += 1
                            print(f"  {cond[1]} {cond[2]:+g} dB: {hi} > {lo} under seed {s} (q {t.q_value:.3g}, "
                                  f"{100 * acc[s][hi]:.2f} vs {100 * acc[s][lo]:.2f} %), "
                                  f"{100 * acc[other][hi]:.2f} vs {100 * acc[other][lo]:.2f} % under seed {other}")
        pooled = {m: np.sum([by_seed[s][m] for s in seeds], axis=0) for m in models}  # as the leaderboard does
        for t in pairwise(pooled, args.alpha, k=len(seeds)):
            if t.different:
                hi, lo = (t.a, t.b) if t.acc_a > t.acc_b else (t.b, t.a)
                pooled_declared += 1
                flips = [s for s in seeds if acc[s][lo] > acc[s][hi]]
                pooled_reversed += bool(flips)
                if flips:
                    print(f"  {cond[1]} {cond[2]:+g} dB: seed mean {hi} > {lo} (q {t.q_value:.3g}), "
                          f"not under seeds {flips}")
        groups = len(list(itertools.combinations(models, 2)))
        print(f"{cond[0].data} {cond[1]} {cond[2]:+g} dB: seeds {seeds}, {len(models)} models, {groups} pairs, "
              f"orders seen {len(orders)}")
    print(f"conditions: {len(conds)}; plain accuracy order changes with the seed in {order_changed}")
    if spreads:
        print(f"per-cell seed range (pp): median {statistics.median(spreads):.2f}, max {max(spreads):.2f}")
    print(f"per-seed leaderboard: {declared} (pair declared different under seed s, other seed t) instances, "
          f"{reversed_} reversed")
    print(f"seed-pooled leaderboard: {pooled_declared} pairs declared different, {pooled_reversed} reversed in "
          "some single seed")


if __name__ == "__main__":
    main()
