"""Where kwsbench keeps things on disk. One function per location; each honours an
environment variable so tests and users can redirect it."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Decoded clip sets, noise banks: `KWSBENCH_CACHE` or ~/.cache/kwsbench."""
    env = os.environ.get("KWSBENCH_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kwsbench"
    return base.expanduser()


def data_home() -> Path:
    """Downloaded and synthesised datasets: `KWSBENCH_DATA` or ~/.local/share/kwsbench/data."""
    env = os.environ.get("KWSBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "kwsbench" / "data"


def checkpoint_home() -> Path:
    """Imported / fetched public checkpoints: `KWSBENCH_CHECKPOINTS` or ~/.local/share/kwsbench/checkpoints."""
    env = os.environ.get("KWSBENCH_CHECKPOINTS")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "kwsbench" / "checkpoints"


def shared_dir() -> Path:
    """The team's shared data folder (`KWSBENCH_SHARED`, default ../shared beside the checkout)."""
    env = os.environ.get("KWSBENCH_SHARED")
    return Path(env).expanduser() if env else PROJECT_ROOT.parent / "shared"
