"""Helpers shared by several test files."""

from __future__ import annotations

from typing import Any

from kwsbench.results.store import StoredCell

_CELL_DEFAULTS: dict[str, Any] = dict(
    cell_key="k" * 64, run_id=1, model="m", checkpoint_sha256="c" * 64, fingerprint="f" * 64,
    protocol="v2-12-official", label_names=tuple(str(i) for i in range(12)), noise="clean", noise_version="",
    snr_db=None, snr_def="", rate_hz=16000, rate_mode="native", decimation="sinc", seed=0, status="ok",
    accuracy=0.5, n=10, correct=5, ci_low=0.2, ci_high=0.8, boot_low=None, boot_high=None, per_class=(),
    macro_f1=None, error="", seconds=0.0, created="2026-01-01T00:00:00",
)


def stored_cell(**fields: Any) -> StoredCell:
    """A StoredCell with plausible defaults for the fields a test does not care about."""
    return StoredCell(**{**_CELL_DEFAULTS, **fields})
