"""Published results: `baselines/*.yaml`, one file per paper, every row with its protocol, condition, source
and verification flag (loaded and validated here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from kwsbench.errors import BadInputError
from kwsbench.paths import PROJECT_ROOT

VERIFICATION = {
    "P": "primary source", "P-draft": "primary, self-reported draft (not peer reviewed)",
    "P-zoo": "official model-zoo card", "S": "secondary copy", "D": "derived from the authors' code",
    "U": "unverified: not a tolerance target",
}
METRICS = ("accuracy",)
_ROW_KEYS = {"model", "protocol", "classes", "split", "condition", "metric", "value", "source", "verification",
             "snr_def", "rate_hz", "note", "std", "spread", "spread_source"}
# noisy_spread: {value, source}: the spread of the file's noisy rows under their protocol's own noise draws
_FILE_KEYS = {"paper", "citation", "defaults", "rows", "notes", "noisy_spread"}
SILENCE_RULES = ("recorded", "background-crops", "zeros")


def baselines_dir() -> Path:
    return PROJECT_ROOT / "baselines"


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
        return "clean" if self.noise == "clean" else f"{self.noise} {self.snr_db:+g} dB"


def _row(paper: str, raw: dict, defaults: dict, where: str) -> Reported:
    unknown = set(raw) - _ROW_KEYS
    if unknown:
        raise BadInputError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_ROW_KEYS))}"
        )
    r = {**defaults, **raw}
    missing = [k for k in ("model", "protocol", "classes", "split", "condition", "value", "source", "verification")
               if r.get(k) in (None, "")]
    if missing:
        raise BadInputError(f"{where}: missing {', '.join(missing)}")
    cond = r["condition"]
    if cond == "clean":
        noise, snr = "clean", None
    elif isinstance(cond, dict) and set(cond) == {"noise", "snr_db"}:
        noise, snr = str(cond["noise"]), float(cond["snr_db"])
    else:
        raise BadInputError(f"{where}: condition must be 'clean' or {{noise: NAME, snr_db: DB}}, got {cond!r}")
    if r["verification"] not in VERIFICATION:
        raise BadInputError(f"{where}: verification {r['verification']!r} not one of {', '.join(VERIFICATION)}")
    metric = r.get("metric", "accuracy")
    if metric not in METRICS:
        raise BadInputError(f"{where}: metric {metric!r} not one of {', '.join(METRICS)}")
    value = float(r["value"])
    if not 0.0 <= value <= 100.0:
        raise BadInputError(f"{where}: accuracy value {value} outside 0..100 (percent)")
    if r["split"] not in ("test", "validation"):
        raise BadInputError(f"{where}: split must be test or validation, got {r['split']!r}")
    spread = r.get("spread")
    if spread is not None and (not isinstance(spread, int | float) or spread < 0 or not r.get("spread_source")):
        raise BadInputError(f"{where}: spread must be a number >= 0 (pp) with a spread_source, got {spread!r}")
    return Reported(
        paper=paper, model=str(r["model"]).lower(), protocol=str(r["protocol"]).lower(), classes=int(r["classes"]),
        split=r["split"], noise=noise, snr_db=snr, snr_def="" if noise == "clean" else str(r.get("snr_def", "rms")),
        rate_hz=int(r.get("rate_hz", 16000)), metric=metric, value=value, source=str(r["source"]),
        verification=r["verification"], note=str(r.get("note", "")),
        spread=None if spread is None else float(spread), spread_source=str(r.get("spread_source", "")),
    )


def load_baseline_file(path: Path) -> list[Reported]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BadInputError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data.get("paper"):
        raise BadInputError(f"{path}: expected a mapping with 'paper' and a list 'rows'")
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise BadInputError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    defaults = data.get("defaults") or {}
    noisy = data.get("noisy_spread")
    if noisy is not None and (not isinstance(noisy, dict) or set(noisy) != {"value", "source"}):
        raise BadInputError(f"{path}: noisy_spread must be {{value: PP, source: TEXT}}, got {noisy!r}")
    raws = [raw if noisy is None or raw.get("condition", defaults.get("condition")) == "clean" or "spread" in raw
            else {**raw, "spread": noisy["value"], "spread_source": noisy["source"]} for raw in data["rows"]]
    rows = [_row(data["paper"], raw, defaults, f"{path.name} row {i + 1}") for i, raw in enumerate(raws)]
    seen: set = set()
    for r in rows:
        key = (r.model, r.protocol, r.split, r.noise, r.snr_db, r.rate_hz, r.source)
        if key in seen:
            raise BadInputError(f"{path.name}: duplicate row {r.model} {r.condition_label()} ({r.source})")
        seen.add(key)
    return rows


def load_baselines(directory: Path | None = None) -> list[Reported]:
    directory = directory or baselines_dir()
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise BadInputError(f"no baseline files (*.yaml) in {directory}")
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
        try:
            d = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise BadInputError(f"{path}: not valid YAML: {err}") from err
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
