"""Subsets of a clip set: class-stratified samples and speaker-disjoint splits, each drawn from a seed only."""

from __future__ import annotations

import numpy as np

from kwsbench.data.clipset import ClipSet
from kwsbench.errors import BadInputError


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts, via SeedSequence (stable across platforms and versions)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def stratified_subset(clipset: ClipSet, per_class: int, seed: int) -> ClipSet:
    """Up to `per_class` clips of every class, drawn with a seeded generator (not the first N files)."""
    rng = np.random.default_rng(seed)
    picks = []
    for k in range(len(clipset.label_names)):
        idx = np.flatnonzero(clipset.labels == k)
        if len(idx):
            picks.append(np.sort(rng.permutation(idx)[:per_class]))
    chosen = np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
    return clipset.subset(chosen, protocol=f"{clipset.protocol}")


def speaker_split(clipset: ClipSet, val_fraction: float, seed: int) -> tuple[ClipSet, ClipSet]:
    """Speaker-disjoint train/validation split: whole speakers go to validation until the fraction is met.

    Clips without a speaker (silence) are split one by one. The draw depends only on the seed and the ids.
    """
    rng = np.random.default_rng(derive_seed(seed, 0x5B11))
    speakers = sorted({s for s in clipset.speaker_ids if s})
    order = [speakers[i] for i in rng.permutation(len(speakers))]
    counts = {s: 0 for s in speakers}
    for s in clipset.speaker_ids:
        if s:
            counts[s] += 1
    target, taken, val_speakers = val_fraction * sum(counts.values()), 0, set()
    for s in order:
        if taken >= target:
            break
        val_speakers.add(s)
        taken += counts[s]
    is_val = np.array([s in val_speakers for s in clipset.speaker_ids])
    anonymous = np.flatnonzero([not s for s in clipset.speaker_ids])
    picked = rng.permutation(anonymous)[: int(round(val_fraction * len(anonymous)))]
    is_val[picked] = True
    if is_val.all() or not is_val.any():
        raise BadInputError(f"cannot split {len(clipset)} clips into train and validation (val_fraction "
                            f"{val_fraction}, {len(speakers)} speakers); give more data")
    train = clipset.subset(np.flatnonzero(~is_val), protocol=f"{clipset.protocol}:train-split")
    val = clipset.subset(np.flatnonzero(is_val), protocol=f"{clipset.protocol}:val-split")
    return train, val


def cap_per_class(clipset: ClipSet, per_class: int, seed: int) -> ClipSet:
    rng = np.random.default_rng(derive_seed(seed, 0xCA9))
    keep = [rng.permutation(np.flatnonzero(clipset.labels == k))[:per_class] for k in range(len(clipset.label_names))]
    return clipset.subset(np.sort(np.concatenate(keep)), protocol=clipset.protocol)




def capped_subset(clipset: ClipSet, caps: dict[str, int], seed: int) -> ClipSet:
    """At most caps[name] clips of each class named in `caps` (a seeded draw); every clip of the others."""
    rng = np.random.default_rng(derive_seed(seed, 0xCA95))
    keep = []
    for k, name in enumerate(clipset.label_names):
        idx = np.flatnonzero(clipset.labels == k)
        keep.append(np.sort(rng.permutation(idx)[:caps[name]]) if name in caps else idx)
    return clipset.subset(np.sort(np.concatenate(keep)), protocol=clipset.protocol)
