"""Noise sources, the deterministic per-utterance noise bank, and declared-SNR mixing."""

from kwsbench.noise.bank import NoiseBank
from kwsbench.noise.definitions import NoiseSource, definitions_dir, load_definition
from kwsbench.noise.generators import stable_hash, utterance_rng
from kwsbench.noise.mixing import SNR_DEFINITIONS, achieved_snr, mix, noise_gain, speech_level
from kwsbench.noise.sources import get_source, list_sources, render, resolve_recordings

__all__ = [
    "SNR_DEFINITIONS", "NoiseBank", "NoiseSource", "achieved_snr", "definitions_dir", "get_source",
    "list_sources", "load_definition", "mix", "noise_gain", "render", "resolve_recordings", "speech_level",
    "stable_hash", "utterance_rng",
]
