"""Rankings that show ties: within one condition of one clip set, every pair of models gets an exact McNemar
test on the same clips (pooled over the noise seeds both were run with), Benjamini-Hochberg over the pairs of
that condition. Two models share a rank group exactly when that test cannot tell them apart.

Rank groups are written as letters (a compact letter display): models sharing a letter are not significantly
different, and every pair that is not significantly different shares a letter; "a" holds the best model. `rank`
is 1 + the number of models significantly better (so tied models can share a rank).
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kwsbench.results import stats


@dataclass(frozen=True)
class PairResult:
    a: str
    b: str
    acc_a: float
    acc_b: float
    only_a: int
    only_b: int
    p_value: float
    q_value: float
    different: bool


@dataclass(frozen=True)
class RankedModel:
    model: str
    accuracy: float
    rank: int  # 1 + number of models significantly better
    group: str  # letters; models sharing a letter cannot be told apart


def pairwise(correct: dict[str, np.ndarray], alpha: float = 0.05) -> list[PairResult]:
    """Every pair of models (paired 0/1 correctness vectors over the same clip evaluations), BH within the set."""
    names = sorted(correct)
    pairs = list(itertools.combinations(names, 2))
    raw = [stats.mcnemar_exact(correct[a], correct[b]) for a, b in pairs]
    q, reject = stats.benjamini_hochberg([r.p_value for r in raw], alpha)
    return [PairResult(a, b, float(np.mean(correct[a])), float(np.mean(correct[b])), r.only_a, r.only_b,
                       r.p_value, float(qv), bool(rj))
            for (a, b), r, qv, rj in zip(pairs, raw, q, reject, strict=True)]


def _letters(i: int) -> str:
    """a..z, then aa, ab, ... (a 36-model condition can need more than 26 groups)."""
    out = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        out = string.ascii_lowercase[rem] + out
    return out


def letter_groups(order: Sequence[str], different: Callable[[str, str], bool]) -> dict[str, str]:
    """Compact letter display by insert-and-absorb (Piepho 2004): the groups are the maximal sets of models no two
    of which differ. `order`: models best first (the first group gets "a")."""
    groups: list[frozenset[str]] = [frozenset(order)]
    for a, b in itertools.combinations(order, 2):
        if not different(a, b):
            continue
        split: list[frozenset[str]] = []
        for g in groups:
            split.extend([g - {a}, g - {b}] if a in g and b in g else [g])
        # absorb: a group inside another adds nothing
        uniq = set(split)
        groups = [g for g in uniq if g and not any(g < h for h in uniq)]
    pos = {m: i for i, m in enumerate(order)}
    groups.sort(key=lambda g: sorted(pos[m] for m in g))
    letters = {m: "" for m in order}
    for i, g in enumerate(groups):
        for m in sorted(g, key=pos.__getitem__):
            letters[m] += _letters(i) if len(_letters(i)) == 1 else f"[{_letters(i)}]"
    return letters


def rank_models(correct: dict[str, np.ndarray], alpha: float = 0.05) -> tuple[list[RankedModel], list[PairResult]]:
    """Models of one condition best first, with rank and letter group, and the pairwise tests they come from."""
    acc = {m: float(np.mean(v)) if len(v) else 0.0 for m, v in correct.items()}
    order = sorted(acc, key=lambda m: (-acc[m], m))
    tests = pairwise(correct, alpha) if len(order) > 1 else []
    diff = {frozenset((t.a, t.b)): t.different for t in tests}

    def different(a: str, b: str) -> bool:
        return diff.get(frozenset((a, b)), False)

    letters = letter_groups(order, different)
    ranked = [RankedModel(m, acc[m], 1 + sum(1 for o in order if acc[o] > acc[m] and different(o, m)), letters[m])
              for m in order]
    return ranked, tests


def share_group(x: str, y: str) -> bool:
    """Whether two letter groups share a letter (multi-letter groups are bracketed: "[aa]")."""
    def parts(s: str) -> set[str]:
        out, i = set(), 0
        while i < len(s):
            if s[i] == "[":
                j = s.index("]", i)
                out.add(s[i + 1:j])
                i = j + 1
            else:
                out.add(s[i])
                i += 1
        return out

    return bool(parts(x) & parts(y))
