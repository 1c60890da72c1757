"""Datasets: Speech Commands layouts and protocols, the synthetic set, fingerprints."""

from kwsbench.data.clipset import KEYWORDS_10, LABELS_12, ClipSet, compute_fingerprint
from kwsbench.data.speech_commands import PROTOCOLS, load_clipset
from kwsbench.data.synth import ensure_default_dataset

__all__ = ["KEYWORDS_10", "LABELS_12", "PROTOCOLS", "ClipSet", "compute_fingerprint", "ensure_default_dataset",
           "load_clipset"]
