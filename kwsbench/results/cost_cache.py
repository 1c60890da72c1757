"""Params and MACs of the packaged models, kept on disk so `kwsbench leaderboard` does not import torch and the
model zoo to fill its cost columns (that import is most of a second, often several on a busy machine).

The counts are pure functions of the code that computes them, so the cache is keyed by a digest of that code
(kwsbench/cost.py, kwsbench/features.py, kwsbench/models/): any change there starts a fresh cache. Only cards whose
builder and cost function are kwsbench's own are kept; a card registered elsewhere (a test, a user's script) is
always counted afresh. Files: $KWSBENCH_CACHE/cost/<digest>.json.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from kwsbench.paths import cache_dir

_PACKAGE = Path(__file__).resolve().parent.parent  # kwsbench/
_SOURCES = ("cost.py", "features.py", "models")

Counts = tuple[int | None, int | None]


@cache
def code_digest() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        root = _PACKAGE / name
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _file() -> Path:
    return cache_dir() / "cost" / f"{code_digest()}.json"


def _read() -> dict[str, list]:
    try:
        data = json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}  # absent or half-written by a crash: counted afresh
    return data if isinstance(data, dict) else {}


def get(model: str, rate: int) -> Counts | None:
    value = _read().get(f"{model}@{rate}")
    return (value[0], value[1]) if isinstance(value, list) and len(value) == 2 else None


def put(card: Any, rate: int, counts: Counts) -> None:
    """Remember the counts of a packaged card (others are not kept, see the module doc)."""
    own = all(str(getattr(f, "__module__", "")).startswith("kwsbench.") for f in (card.builder, card.cost))
    if not own:
        return
    data = _read()
    data[f"{card.name}@{rate}"] = list(counts)
    path = _file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError:
        pass  # a read-only cache folder only costs speed
