"""Published results: `baselines/*.yaml`, one file per paper, every row with its protocol, condition, source
and verification flag (loaded and validated here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kwsbench.errors import BadInputError
from kwsbench.paths import BASELINES_ENV, packaged, user_baselines_dir
from kwsbench.records import build, limits, read_yaml

VERIFICATION = {
    "P": "primary source", "P-draft": "primary, self-reported draft (not peer reviewed)",
    "P-zoo": "official model-zoo card", "S": "secondary copy", "D": "derived from the authors' code",
    "U": "unverified: not a tolerance target",
}
METRICS = ("accuracy",)


def baselines_dir() -> Path:
    """The published results that ship with kwsbench."""
    return packaged("baselines")


def baseline_files(directory: Path | None = None) -> list[Path]:
    """`directory`'s *.yaml when given; else the packaged files plus the user's `KWSBENCH_BASELINES` folder,
    a user file replacing the packaged one of the same name."""
    if directory is not None:
        return sorted(directory.glob("*.yaml"))
    by_name = {f.name: f for f in baselines_dir().glob("*.yaml")}
    user = user_baselines_dir()
    if user is not None:
        if not user.is_dir():
            raise BadInputError(f"{BASELINES_ENV}={user} is not a folder; point it at a folder of baseline *.yaml")
        by_name.update((f.name, f) for f in user.glob("*.yaml"))
    return [by_name[name] for name in sorted(by_name)]


@dataclass(frozen=True)
class Reported:
    paper: str
    model: str
    protocol: str
    classes: int
    split: str
    noise: str  # "clean" or a noise source name
    snr_db: float | None
    snr_def: str  # "" for clean
    rate_hz: int
    metric: str
    value: float  # percent
    source: str
    verification: str
    note: str = ""

    def condition_label(self) -> str:
        return "clean" if self.noise == "clean" else f"{self.noise} {self.snr_db:+g} dB"


@dataclass(frozen=True)
class Condition:
    noise: str
    snr_db: float = field(metadata=limits(lo=-60, hi=60, help="give an SNR in dB within -60..60"))


@dataclass(frozen=True)
class RowFile:
    """One row as written in a baseline file (after the file's `defaults` are applied); checked by
    kwsbench.records."""

    model: str = field(metadata=limits(nonempty=True))
    protocol: str = field(metadata=limits(nonempty=True))
    classes: int = field(metadata=limits(lo=2))
    split: str = field(metadata=limits(choices=("test", "validation"), help="pick test or validation"))
    # 'clean' or {noise: NAME, snr_db: DB}
    condition: Literal["clean"] | Condition = field(metadata=limits(
        help="write 'clean' or {noise: NAME, snr_db: DB}"))
    value: float = field(metadata=limits(lo=0, hi=100, help="give the accuracy in percent (0..100)"))
    source: str = field(metadata=limits(nonempty=True))
    verification: str = field(metadata=limits(choices=tuple(VERIFICATION), help="pick one of them"))
    metric: str = field(default="accuracy", metadata=limits(choices=METRICS))
    snr_def: str = "rms"
    rate_hz: int = field(default=16000, metadata=limits(lo=1))
    note: str = ""
    std: float | None = None


@dataclass(frozen=True)
class BaselineFile:
    paper: str = field(metadata=limits(nonempty=True))
    rows: list[dict[str, Any]]
    citation: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: str | list[str] = ""


def _row(paper: str, raw: Any, defaults: dict, where: str) -> Reported:
    if not isinstance(raw, dict):
        raise BadInputError(f"{where}: a row must be a mapping of keys, got {raw!r}")
    r = build(RowFile, {**defaults, **raw}, where)
    noise, snr = ("clean", None) if r.condition == "clean" else (r.condition.noise, r.condition.snr_db)
    return Reported(
        paper=paper, model=r.model.lower(), protocol=r.protocol.lower(), classes=r.classes, split=r.split,
        noise=noise, snr_db=snr, snr_def="" if noise == "clean" else r.snr_def, rate_hz=r.rate_hz, metric=r.metric,
        value=r.value, source=r.source, verification=r.verification, note=r.note,
    )


def load_baseline_file(path: Path) -> list[Reported]:
    data = build(BaselineFile, read_yaml(path, "baseline file"), f"baseline file {path}")
    rows = [_row(data.paper, raw, data.defaults, f"{path.name} row {i + 1}") for i, raw in enumerate(data.rows)]
    seen: set = set()
    for r in rows:
        key = (r.model, r.protocol, r.split, r.noise, r.snr_db, r.rate_hz, r.source)
        if key in seen:
            raise BadInputError(f"{path.name}: duplicate row {r.model} {r.condition_label()} ({r.source})")
        seen.add(key)
    return rows


def load_baselines(directory: Path | None = None) -> list[Reported]:
    files = baseline_files(directory)
    if not files:
        raise BadInputError(f"no baseline files (*.yaml) in {directory or baselines_dir()}")
    return [row for f in files for row in load_baseline_file(f)]
