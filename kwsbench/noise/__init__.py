"""Noise sources, the deterministic per-utterance noise bank, and declared-SNR mixing.

The names below are imported on first use (module `__getattr__`), so reading the definitions
(`kwsbench noise list`) does not import the bank's torch and multiprocessing machinery.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "NoiseBank": "bank",
    "NoiseSource": "definitions", "definitions_dir": "definitions", "load_definition": "definitions",
    "stable_hash": "generators", "utterance_rng": "generators",
    "SNR_DEFINITIONS": "definitions", "achieved_snr": "mixing", "mix": "mixing", "noise_gain": "mixing",
    "speech_level": "mixing",
    "get_source": "sources", "list_sources": "sources", "render": "sources", "resolve_recordings": "sources",
    "resolve_name": "sources",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'kwsbench.noise' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kwsbench.noise.{_WHERE[name]}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
