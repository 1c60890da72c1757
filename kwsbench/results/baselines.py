"""Published results: `baselines/*.yaml`, one file per paper, every row with its protocol, condition, source
and verification flag (loaded and validated here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kwsbench.errors import BadInputError
from kwsbench.paths import BASELINES_ENV, packaged, user_baselines_dir
from kwsbench.records import build, limits, read_yaml
from kwsbench.results.store import condition_label

VERIFICATION = {
    "P": "primary source", "P-draft": "primary, self-reported draft (not peer reviewed)",
    "P-zoo": "official model-zoo card", "S": "secondary copy", "D": "derived from the authors' code",
    "U": "unverified: not a tolerance target",
}
METRICS = ("accuracy",)
SILENCE_RULES = ("recorded", "background-crops", "zeros")


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
    spread: float | None = None  # pp: how far the protocol's own repeated measurements move (see spread_source)
    spread_source: str = ""

    def condition_label(self) -> str:
        return condition_label(self.noise, self.snr_db)


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
    spread: float | None = field(default=None, metadata=limits(lo=0, help="give the spread in pp (>= 0)"))
    spread_source: str = ""


@dataclass(frozen=True)
class BaselineFile:
    paper: str = field(metadata=limits(nonempty=True))
    rows: list[dict[str, Any]]
    citation: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: str | list[str] = ""
    # {value: PP, source: TEXT}: the spread of the file's noisy rows under their protocol's own noise draws
    noisy_spread: dict[str, Any] | None = None


def _row(paper: str, raw: Any, defaults: dict, where: str) -> Reported:
    if not isinstance(raw, dict):
        raise BadInputError(f"{where}: a row must be a mapping of keys, got {raw!r}")
    r = build(RowFile, {**defaults, **raw}, where)
    if r.spread is not None and not r.spread_source:
        raise BadInputError(f"{where}: a spread needs its spread_source (where the figure comes from)")
    noise, snr = ("clean", None) if r.condition == "clean" else (r.condition.noise, r.condition.snr_db)
    return Reported(
        paper=paper, model=r.model.lower(), protocol=r.protocol.lower(), classes=r.classes, split=r.split,
        noise=noise, snr_db=snr, snr_def="" if noise == "clean" else r.snr_def, rate_hz=r.rate_hz, metric=r.metric,
        value=r.value, source=r.source, verification=r.verification, note=r.note, spread=r.spread,
        spread_source=r.spread_source,
    )


def load_baseline_file(path: Path) -> list[Reported]:
    data = build(BaselineFile, read_yaml(path, "baseline file"), f"baseline file {path}")
    noisy = data.noisy_spread
    if noisy is not None and (set(noisy) != {"value", "source"} or not isinstance(noisy["value"], int | float)):
        raise BadInputError(f"baseline file {path}: noisy_spread must be {{value: PP, source: TEXT}}, got {noisy!r}")
    raws = [raw if noisy is None or not isinstance(raw, dict) or "spread" in raw
            or raw.get("condition", data.defaults.get("condition")) == "clean"
            else {**raw, "spread": noisy["value"], "spread_source": noisy["source"]} for raw in data.rows]
    rows = [_row(data.paper, raw, data.defaults, f"{path.name} row {i + 1}") for i, raw in enumerate(raws)]
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


@dataclass(frozen=True)
class ProtocolPrior:
    """A published test protocol's class composition (baselines/protocols/<name>.yaml), for bridged estimates."""

    protocol: str
    description: str
    archive: str  # the `kwsbench data download` name of the archive it is built from
    silence: str  # how its silence items are made: one of SILENCE_RULES
    counts: dict[str, int]  # stratum (keyword / unknown / silence) -> items
    sources: dict[str, str]

    def weights(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {k: v / total for k, v in self.counts.items()}


def load_protocol_priors(directory: Path | None = None) -> dict[str, ProtocolPrior]:
    """Every `protocols/*.yaml` under the baselines folder (none: no protocol can be bridged)."""
    folder = (directory or baselines_dir()) / "protocols"
    out = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        d = read_yaml(path, "protocol composition")
        strata = d.get("strata") if isinstance(d, dict) else None
        if (not isinstance(strata, dict) or set(strata) != {"keyword", "unknown", "silence"}
                or d.get("silence") not in SILENCE_RULES or not d.get("protocol") or not d.get("archive")):
            raise BadInputError(f"{path}: expected protocol, archive, silence ({' / '.join(SILENCE_RULES)}) and "
                                "strata keyword, unknown, silence, each {count: N, source: TEXT}")
        bad = [k for k, v in strata.items() if not isinstance(v, dict) or not isinstance(v.get("count"), int)
               or v["count"] < 0 or not v.get("source")]
        if bad:
            raise BadInputError(f"{path}: stratum {', '.join(bad)} needs an integer count >= 0 and a source")
        name = str(d["protocol"]).lower()
        out[name] = ProtocolPrior(name, str(d.get("description", "")), str(d["archive"]), d["silence"],
                                  {k: v["count"] for k, v in strata.items()},
                                  {k: str(v["source"]) for k, v in strata.items()})
    return out
