"""kwsbench's own seed spread: how much a cell's accuracy moves when only the noise seed changes.

    kwsbench run --models ds-cnn-s,bc-resnet-1-ncssm,nc-ssm,nanomamba-tiny --data-dir DEV --per-class 20 \\
        --noise white-ncssm,pink-ncssm,factory-ncssm,street-ncssm,babble-synthetic-ncssm --snr -5 0 5 \\
        --seeds 0,1,2,3,4 --store seeds.sqlite
    python benchmarks/seed_spread.py --store seeds.sqlite

For every (model, noise, SNR, rate) cell measured under two or more seeds: the range (max - min) and standard
deviation of its accuracy over the seeds, in percentage points; then, per condition (noise, SNR, rate) with
every model at every seed, whether the models' order by accuracy changes with the seed (ties broken by name).
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from kwsbench.results.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    args = ap.parse_args()
    with Store(args.store) as store:
        cells = [c for c in store.cells() if c.noise != "clean"]
    acc: dict[tuple, dict[int, float]] = defaultdict(dict)
    for c in cells:
        acc[(c.model, c.noise, c.snr_db, c.rate_hz, c.fingerprint)][c.seed] = 100.0 * c.accuracy
    seeds = sorted({c.seed for c in cells})
    ranges, sds = [], []
    for values in acc.values():
        if len(values) >= 2:
            v = list(values.values())
            ranges.append(max(v) - min(v))
            sds.append(statistics.stdev(v))
    models = sorted({k[0] for k in acc})
    conditions = sorted({k[1:] for k in acc})
    changed = 0
    complete = 0
    for cond in conditions:
        per = {m: acc.get((m, *cond), {}) for m in models}
        if not all(set(seeds) <= set(per[m]) for m in models):
            continue
        complete += 1
        orders = {tuple(sorted(models, key=lambda m, s=s: (-per[m][s], m))) for s in seeds}
        changed += len(orders) > 1
    n = {c.n for c in cells}
    print(f"{len(ranges)} cells x {len(seeds)} seeds ({', '.join(map(str, seeds))}), {len(models)} models, "
          f"n = {'/'.join(map(str, sorted(n)))} clips")
    print(f"per-cell accuracy range over seeds: median {statistics.median(ranges):.2f} pp, "
          f"max {max(ranges):.2f} pp; seed SD median {statistics.median(sds):.2f} pp, max {max(sds):.2f} pp")
    print(f"model order changes with the seed in {changed} of {complete} conditions")


if __name__ == "__main__":
    main()
