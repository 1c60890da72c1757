"""Paired model comparison: exact McNemar per condition both models were measured under (same clips),
Benjamini-Hochberg over the grid of each clip set (results of different clip sets or weights are never pooled)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kwsbench.errors import BadInputError
from kwsbench.results import stats
from kwsbench.results.clipsets import ClipSetKey, Selection, labels_for, select

_PAIR_COLS = ("fingerprint", "noise", "noise_version", "snr_db", "snr_def", "rate_hz", "rate_mode", "decimation",
              "seed", "precision")


@dataclass
class PairedTest:
    condition: dict[str, Any]
    acc_a: float
    acc_b: float
    n: int
    only_a: int
    only_b: int
    p_value: float
    q_value: float = 1.0
    significant: bool = False
    clip_set: ClipSetKey | None = None  # the clip set (data, protocol, fingerprint) and weights of model A


def paired_tests(store, model_a: str, model_b: str, alpha: float = 0.05,
                 selection: Selection | None = None) -> list[PairedTest]:
    """Exact McNemar per condition both models were measured under (same clips); BH over the conditions of each
    clip set and weights pair. `selection` keeps one clip set (--data/--protocol/--weights/--run)."""
    if model_a == model_b:
        raise BadInputError(f"compare needs two different models, got {model_a!r} twice; name another stored model")
    if not 0 < alpha < 1:
        raise BadInputError(f"--alpha is a false-discovery rate, between 0 and 1 exclusive, got {alpha}; "
                            "e.g. --alpha 0.05")
    mine = store.cells(model=model_a) + store.cells(model=model_b)
    names = labels_for(store.runs(), mine)
    if selection is not None:
        mine = select(mine, names, selection)
    cells_a = {tuple(getattr(c, k) for k in _PAIR_COLS): c for c in mine if c.model == model_a}
    cells_b = {tuple(getattr(c, k) for k in _PAIR_COLS): c for c in mine if c.model == model_b}
    shared = sorted(set(cells_a) & set(cells_b), key=lambda k: (names.key(cells_a[k]), k[1],
                                                               -1e9 if k[3] is None else k[3], k[5], k[8]))
    if not shared:
        raise BadInputError(f"no condition measured for both {model_a!r} and {model_b!r} on the same clips; "
                            "run both with `kwsbench run` first")
    tests = []
    for key in shared:
        a, b = cells_a[key], cells_b[key]
        _, _, labels = store.clips(a.fingerprint)
        ca = store.predictions(a.cell_key) == labels
        cb = store.predictions(b.cell_key) == labels
        res = stats.mcnemar_exact(ca, cb)
        tests.append(PairedTest(dict(zip(_PAIR_COLS, key, strict=True)), float(ca.mean()), float(cb.mean()),
                                len(labels), res.only_a, res.only_b, res.p_value,
                                clip_set=_pair_key(names.key(a), names.key(b))))
    for family in {t.clip_set for t in tests}:
        members = [t for t in tests if t.clip_set == family]
        q, reject = stats.benjamini_hochberg(np.array([t.p_value for t in members]), alpha)
        for t, qv, rj in zip(members, q, reject, strict=True):
            t.q_value, t.significant = float(qv), bool(rj)
    return tests


def _pair_key(a: ClipSetKey, b: ClipSetKey) -> ClipSetKey:
    """The clip set of a pair; when the two models' weights come from different manifests, both are named."""
    return a if a.weights == b.weights else ClipSetKey(a.data, a.protocol, a.fingerprint, f"{a.weights} / {b.weights}")
