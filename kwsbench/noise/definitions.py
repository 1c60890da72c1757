"""Noise-source definitions: one YAML file per source in the top-level `noise/` folder.

A definition names a generator `kind` and its parameters. The loader checks every field and
reports the file and the field of any mistake, so a typo never silently becomes a default.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kwsbench.errors import BadInputError
from kwsbench.paths import PROJECT_ROOT

# Parameter types: "float", "int", "bool", "str", "range" (two numbers lo <= hi),
# "irange" (two integers lo <= hi, inclusive), "pair" (two numbers, any order), "files" (non-empty list of file names),
# "choice:a|b" (one of the listed strings).
ParamSpec = dict[str, tuple[str, Any]]

_NORMALISE = "choice:rms|peak"

# Defaults are the published NC-SSM generator's values (nc-ssm.md section 7) where one exists.
KIND_PARAMS: dict[str, ParamSpec] = {
    "white": {"normalise": (_NORMALISE, "rms")},
    "colored": {
        "exponent": ("float", 1.0),
        "keep_dc": ("bool", False),
        "normalise": (_NORMALISE, "rms"),
    },
    "factory": {
        "hum_base_hz": ("float", 50.0),
        "hum_harmonics": ("int", 5),
        "hum_amplitude": ("float", 0.3),
        "rumble_gain": ("float", 0.2),
        "rumble_band_hz": ("range", [200.0, 800.0]),
        "rumble_smooth_bins": ("int", 20),
        "impact_count": ("irange", [5, 14]),
        "impact_length": ("irange", [50, 499]),
        "impact_amplitude": ("range", [0.3, 0.8]),
        "impact_start_margin": ("int", 1000),
        "pink_gain": ("float", 0.15),
        "pink_keep_dc": ("bool", False),
        "normalise": (_NORMALISE, "rms"),
    },
    "street": {
        "rumble_gain": ("float", 0.3),
        "rumble_band_hz": ("range", [20.0, 200.0]),
        "rumble_smooth_bins": ("int", 10),
        "horn_count": ("irange", [1, 3]),
        "horn_hz": ("range", [300.0, 600.0]),
        "horn_length": ("irange", [1000, 2999]),
        "horn_amplitude": ("range", [0.3, 0.6]),
        "horn_start_margin": ("int", 3000),
        "road_gain": ("float", 0.15),
        "engine_hz": ("range", [80.0, 150.0]),
        "engine_gains": ("pair", [0.2, 0.1]),
        "engine_random_phase": ("bool", True),
        "normalise": (_NORMALISE, "rms"),
    },
    "babble-synthetic": {
        "talker_count": ("irange", [5, 8]),
        "f0_hz": ("range", [100.0, 300.0]),
        "f0_gain": ("float", 0.3),
        "f0_harmonic_gain": ("float", 0.1),
        "formant_gain": ("float", 0.15),
        "formants_hz": ("range", [730.0, 2440.0]),
        "formant_mid_hz": ("float", 1090.0),
        "onset_s": ("range", [0.05, 0.3]),
        "duration_s": ("range", [0.3, 0.8]),
        "normalise": (_NORMALISE, "peak"),
    },
    "babble-clips": {
        "talker_count": ("irange", [5, 9]),
        "pool": ("choice:speech|unknown-only", "speech"),
        "normalise": (_NORMALISE, "rms"),
    },
    "babble-streams": {
        "talker_count": ("irange", [6, 8]),
        "pause_s": ("range", [0.0, 0.15]),
        "stream_voice": ("choice:any|one", "any"),
        "normalise": (_NORMALISE, "rms"),
    },
    "babble-tts": {
        "talker_count": ("irange", [6, 8]),
        "pause_s": ("range", [0.1, 0.4]),
        "stream_voice": ("choice:any|one", "one"),
        "voices": ("int", 24),
        "sentences_per_voice": ("int", 4),
        "voice_seed": ("int", 1717),
        "normalise": (_NORMALISE, "rms"),
    },
    "recording": {
        "files": ("files", None),
        "normalise": (_NORMALISE, "rms"),
    },
}

# Fields every definition must carry, with their types.
REQUIRED_FIELDS: dict[str, type] = {"name": str, "version": int, "kind": str, "description": str}
OPTIONAL_FIELDS: dict[str, type] = {"provenance": str, "licence": str, "params": dict, "comparable_to": str}


@dataclass(frozen=True)
class NoiseSource:
    """A validated noise-source definition.

    key: sha256 over the canonical definition (name, version, kind, every parameter with its
    default filled in), so a parameter change without a version bump still changes the key.
    """

    name: str
    version: int
    kind: str
    description: str
    params: dict[str, Any]
    path: Path | None = None
    provenance: str = ""
    licence: str = ""
    comparable_to: str = ""
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            blob = json.dumps(
                {"name": self.name, "version": self.version, "kind": self.kind, "params": self.params},
                sort_keys=True,
            )
            object.__setattr__(self, "key", hashlib.sha256(blob.encode()).hexdigest())

    @property
    def needs_clipset(self) -> bool:
        return self.kind in ("babble-clips", "babble-streams")

    @property
    def needs_recordings(self) -> bool:
        return self.kind == "recording"

    @property
    def keyed_by_content(self) -> bool:
        """Audio that is read or spoken, not drawn: its sha256 enters the bank key (files, the speech engine)."""
        return self.kind in ("recording", "babble-tts")


def definitions_dir() -> Path:
    """The folder of noise YAML files: `KWSBENCH_NOISE_DEFS` or the project's `noise/` folder."""
    env = os.environ.get("KWSBENCH_NOISE_DEFS")
    return Path(env).expanduser() if env else PROJECT_ROOT / "noise"


def _fail(path: Path, field_name: str, problem: str) -> BadInputError:
    return BadInputError(f"noise definition {path}: field '{field_name}' {problem}")


def _check_param(path: Path, name: str, spec: str, value: Any) -> Any:
    where = f"params.{name}"
    if spec == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(path, where, f"must be a number, got {value!r}")
        return float(value)
    if spec == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, where, f"must be an integer, got {value!r}")
        return int(value)
    if spec == "bool":
        if not isinstance(value, bool):
            raise _fail(path, where, f"must be true or false, got {value!r}")
        return value
    if spec == "str":
        if not isinstance(value, str):
            raise _fail(path, where, f"must be a string, got {value!r}")
        return value
    if spec in ("range", "irange", "pair"):
        kinds = (int,) if spec == "irange" else (int, float)
        ok = isinstance(value, list) and len(value) == 2
        ok = ok and all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)
        if not ok:
            what = "integers" if spec == "irange" else "numbers"
            raise _fail(path, where, f"must be a list of two {what} [low, high], got {value!r}")
        return [int(v) for v in value] if spec == "irange" else [float(v) for v in value]
    if spec == "files":
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise _fail(path, where, f"must be a non-empty list of file names, got {value!r}")
        return list(value)
    if spec.startswith("choice:"):
        choices = spec.split(":", 1)[1].split("|")
        if value not in choices:
            raise _fail(path, where, f"must be one of {', '.join(choices)}, got {value!r}")
        return value
    raise AssertionError(f"unknown parameter spec {spec}")


def parse_definition(raw: Any, path: Path) -> NoiseSource:
    """Validate one parsed YAML document; BadInputError names the file and the field."""
    if not isinstance(raw, dict):
        raise BadInputError(f"noise definition {path}: expected a mapping of fields, got {type(raw).__name__}")
    for name, typ in REQUIRED_FIELDS.items():
        if name not in raw:
            raise _fail(path, name, "is missing")
        if not isinstance(raw[name], typ) or isinstance(raw[name], bool):
            raise _fail(path, name, f"must be of type {typ.__name__}, got {raw[name]!r}")
    for name, typ in OPTIONAL_FIELDS.items():
        if name in raw and not isinstance(raw[name], typ):
            raise _fail(path, name, f"must be of type {typ.__name__}, got {raw[name]!r}")
    unknown = sorted(set(raw) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise _fail(path, unknown[0], "is not a known field (known: "
                    f"{', '.join([*REQUIRED_FIELDS, *OPTIONAL_FIELDS])})")
    if raw["version"] < 1:
        raise _fail(path, "version", f"must be >= 1, got {raw['version']}")
    kind = raw["kind"]
    if kind not in KIND_PARAMS:
        raise _fail(path, "kind", f"must be one of {', '.join(KIND_PARAMS)}, got {kind!r}")
    specs = KIND_PARAMS[kind]
    given = raw.get("params") or {}
    extra = sorted(set(given) - set(specs))
    if extra:
        raise _fail(path, f"params.{extra[0]}", f"is not a parameter of kind '{kind}' (known: {', '.join(specs)})")
    params: dict[str, Any] = {}
    for pname, (spec, default) in specs.items():
        if pname in given:
            params[pname] = _check_param(path, pname, spec, given[pname])
        elif default is None:
            raise _fail(path, f"params.{pname}", f"is missing (required for kind '{kind}')")
        else:
            params[pname] = default
    for pname, spec in ((p, s) for p, (s, _) in specs.items()):
        if spec in ("range", "irange") and params[pname][0] > params[pname][1]:
            raise _fail(path, f"params.{pname}", f"must have low <= high, got {params[pname]}")
    return NoiseSource(
        name=raw["name"], version=raw["version"], kind=kind, description=raw["description"].strip(),
        params=params, path=path, provenance=str(raw.get("provenance", "")).strip(),
        licence=str(raw.get("licence", "")).strip(), comparable_to=str(raw.get("comparable_to", "")).strip(),
    )


def load_definition(path: Path) -> NoiseSource:
    """Read and validate one YAML file; its `name` must equal the file's stem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise BadInputError(f"noise definition {path}: cannot be read ({err})") from err
    except yaml.YAMLError as err:
        raise BadInputError(f"noise definition {path}: not valid YAML ({err})") from err
    source = parse_definition(raw, path)
    if source.name != path.stem:
        raise _fail(path, "name", f"must equal the file name '{path.stem}', got {source.name!r}")
    return source


def load_all(directory: Path | None = None) -> dict[str, NoiseSource]:
    """Every `*.yaml` definition in the folder, by name."""
    folder = directory or definitions_dir()
    if not folder.is_dir():
        raise BadInputError(f"noise definitions folder {folder} does not exist; set KWSBENCH_NOISE_DEFS")
    return {s.name: s for s in (load_definition(p) for p in sorted(folder.glob("*.yaml")))}
