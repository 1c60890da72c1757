"""The ClipSet record: a whole test set as one array, with labels, ids and a fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

CLIP_SAMPLES = 16000
SAMPLE_RATE = 16000

# The order the published 12-class checkpoints use.
LABELS_12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "silence", "unknown")
KEYWORDS_10 = LABELS_12[:10]

# Protocol suffix of the silence items a reproduce bridge builds for a reported protocol ("<reported>:silence-test",
# crops of the background-noise recordings or all-zero audio). Their cells feed the bridge's silence term; they
# are not a data set of their own, so leaderboard, compare and report leave them out unless asked for by protocol.
BRIDGE_ITEMS_MARK = ":silence"


def is_bridge_items(protocol: str) -> bool:
    return BRIDGE_ITEMS_MARK in str(protocol)


@dataclass
class ClipSet:
    """N one-second clips at 16 kHz.

    audio: (N, 16000) float32 in [-1, 1) (int16 / 32768, exact for 16-bit sources).
    labels: (N,) int64 indices into `label_names`.
    utterance_ids: relative paths, unique, the key of every per-utterance record.
    speaker_ids: speaker hash per clip, "" where unknown (silence).
    """

    audio: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    utterance_ids: tuple[str, ...]
    speaker_ids: tuple[str, ...]
    protocol: str
    fingerprint: str = ""
    skipped: int = 0
    sample_rate: int = SAMPLE_RATE
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.utterance_ids)
        if self.audio.shape != (n, CLIP_SAMPLES) or len(self.labels) != n or len(self.speaker_ids) != n:
            raise ValueError(
                f"ClipSet fields disagree: audio {self.audio.shape}, {len(self.labels)} labels, "
                f"{n} utterance ids, {len(self.speaker_ids)} speaker ids"
            )
        if not self.fingerprint:
            self.fingerprint = compute_fingerprint(self.utterance_ids, self.labels, self.label_names, self.audio)

    def __len__(self) -> int:
        return len(self.utterance_ids)

    def subset(self, indices: np.ndarray, protocol: str | None = None) -> ClipSet:
        """A new ClipSet of the given rows (its own fingerprint)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ClipSet(
            audio=self.audio[idx],
            labels=self.labels[idx],
            label_names=self.label_names,
            utterance_ids=tuple(self.utterance_ids[i] for i in idx),
            speaker_ids=tuple(self.speaker_ids[i] for i in idx),
            protocol=protocol or self.protocol,
            sample_rate=self.sample_rate,
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True)}


def compute_fingerprint(
    utterance_ids: tuple[str, ...], labels: np.ndarray, label_names: tuple[str, ...], audio: np.ndarray
) -> str:
    """sha256 over the sorted (relative path, label name, sha256 of the int16 samples) lines."""
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    lines = sorted(
        f"{uid}\t{label_names[int(lab)]}\t{hashlib.sha256(pcm[i].tobytes()).hexdigest()}"
        for i, (uid, lab) in enumerate(zip(utterance_ids, labels, strict=True))
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
