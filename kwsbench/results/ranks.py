"""Rankings that show ties: within one condition of one clip set, every pair of models gets an exact McNemar
test on the same clips, Benjamini-Hochberg over the pairs of that condition. Two models share a rank group
exactly when that test cannot tell them apart.

Over k noise seeds the clip stays the unit: each clip's count of correct seeds (0..k) is compared between the two
models, and the test is the exact sign-flip (permutation) test of the sum of the per-clip differences, whose
null distribution is a convolution of binomials. With one seed this is exactly McNemar's test. Concatenating the
seeds instead would count one clip k times (for clean audio, k identical copies) and declare differences that are
not there.
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


def sign_flip_test(a: np.ndarray, b: np.ndarray, k: int = 1) -> stats.McNemarResult:
    """Exact two-sided sign-flip test of sum(a - b) for per-clip correct counts out of `k` seeds.

    Under the null each clip's difference d_i is as likely to be +|d_i| as -|d_i|; the sum then is, for each weight
    w = 1..k with c_w clips, w * (2 Bin(c_w, 1/2) - c_w), convolved over w (computed through the Fourier
    transform: the product of cos(w theta)^c_w). For k = 1 (0/1 correctness) this is
    the exact McNemar test. only_a / only_b: clips where A / B is ahead."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {b.shape}")
    d = a - b
    ahead_a, ahead_b = int(np.sum(d > 0)), int(np.sum(d < 0))
    if ahead_a + ahead_b == 0:
        return stats.McNemarResult(0, 0, 1.0)
    if k == 1:
        return stats.mcnemar_exact(a.astype(bool), b.astype(bool))
    # The sum's distribution through its Fourier transform: a clip of weight w contributes +-w with probability
    # 1/2 each, whose transform is cos(w theta); the product over clips, inverted by one FFT of the support length.
    weights = np.abs(d)
    counts = np.bincount(weights, minlength=k + 1)[1:]
    total = int(weights.sum())
    size = 1 << (2 * total).bit_length()  # >= the support -total..total (no wrap-around); a fast FFT length
    theta = 2 * np.pi * np.arange(size) / size
    log_mag = np.zeros(size)
    sign = np.ones(size)
    for w, c in enumerate(counts, start=1):
        if c:
            cw = np.cos(w * theta)
            log_mag += c * np.log(np.maximum(np.abs(cw), 1e-300))
            sign *= np.where(cw < 0, (-1.0) ** c, 1.0)
    spectrum = sign * np.exp(log_mag) * np.exp(-1j * theta * total)
    dist = np.clip(np.fft.ifft(spectrum).real[: 2 * total + 1], 0.0, None)
    values = np.arange(-total, total + 1)
    p = float(dist[np.abs(values) >= abs(int(d.sum()))].sum() / dist.sum())
    return stats.McNemarResult(ahead_a, ahead_b, min(1.0, p))


def pairwise(correct: dict[str, np.ndarray], alpha: float = 0.05, k: int = 1) -> list[PairResult]:
    """Every pair of models (per-clip counts of correct seeds, 0..k, over the same clips), BH within the set."""
    names = sorted(correct)
    pairs = list(itertools.combinations(names, 2))
    raw = [sign_flip_test(correct[a], correct[b], k) for a, b in pairs]
    q, reject = stats.benjamini_hochberg([r.p_value for r in raw], alpha)
    return [PairResult(a, b, float(np.mean(correct[a])) / k, float(np.mean(correct[b])) / k, r.only_a, r.only_b,
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


def rank_models(correct: dict[str, np.ndarray], alpha: float = 0.05,
                k: int = 1) -> tuple[list[RankedModel], list[PairResult]]:
    """Models of one condition best first, with rank and letter group, and the pairwise tests they come from.
    `correct`: per model, each clip's count of correct seeds (0/1 for one seed) out of `k`."""
    acc = {m: float(np.mean(v)) / k if len(v) else 0.0 for m, v in correct.items()}
    order = sorted(acc, key=lambda m: (-acc[m], m))
    tests = pairwise(correct, alpha, k) if len(order) > 1 else []
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
