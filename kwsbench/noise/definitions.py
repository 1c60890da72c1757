"""Noise-source definitions: one YAML file per source in the top-level `noise/` folder (shipped in the wheel),
plus the user's own beside them in the noise folder (`--noise-dir` / `KWSBENCH_NOISE_DIR`).

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

from kwsbench.errors import BadInputError
from kwsbench.paths import NOISE_DIR_ENV, packaged, user_noise_dir
from kwsbench.records import build, check, limits, read_yaml

# How a mixture's SNR is measured (kwsbench.noise.mixing). Kept here, free of torch, so a plan can check its
# snr_def without importing the mixing code.
SNR_DEFINITIONS = ("rms", "active")

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

@dataclass(frozen=True)
class DefinitionFile:
    """The fields of a definition file as written (kwsbench.records checks them); `params` are checked against
    the kind's parameter specs."""

    name: str
    version: int = field(metadata=limits(lo=1, help="give a version >= 1 (bump it when the sound changes)"))
    kind: str = field(metadata=limits(choices=tuple(KIND_PARAMS), help="pick one of the kinds"))
    description: str
    provenance: str = ""
    licence: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    comparable_to: str = ""


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
    """The packaged noise YAML files: `KWSBENCH_NOISE_DEFS` (a replacement folder), else kwsbench's `noise/`."""
    env = os.environ.get("KWSBENCH_NOISE_DEFS")
    return Path(env).expanduser() if env else packaged("noise")


def definition_dirs(noise_dir: Path | str | None = None) -> list[Path]:
    """Where definitions are read, later ones replacing earlier ones of the same name: the packaged folder, then
    the user's noise folder (`noise_dir`, else `KWSBENCH_NOISE_DIR`), whose *.yaml files add sources."""
    user = user_noise_dir(noise_dir)
    if user is None or user.resolve() == definitions_dir().resolve():
        return [definitions_dir()]
    if not user.is_dir():
        origin = "--noise-dir" if noise_dir is not None else NOISE_DIR_ENV
        raise BadInputError(f"noise folder {user} ({origin}) does not exist; pass an existing folder of noise "
                            "recordings and definitions")
    return [definitions_dir(), user]


def _fail(path: Path, field_name: str, problem: str) -> BadInputError:
    return BadInputError(f"noise definition {path}: field '{field_name}' {problem}")


def _field(name: str) -> str:
    return f"field '{name}'"


def _ordered(value: list) -> str:
    return "" if value[0] <= value[1] else "must have low <= high"


# A parameter spec as a type hint and limits for kwsbench.records
_SPEC_TYPES: dict[str, tuple[Any, dict[str, Any]]] = {
    "float": (float, {}), "int": (int, {}), "bool": (bool, {}), "str": (str, {}),
    "range": (tuple[float, float], limits(check=_ordered)), "irange": (tuple[int, int], limits(check=_ordered)),
    "pair": (tuple[float, float], {}), "files": (list[str], limits(nonempty=True)),
}


def _check_param(path: Path, name: str, spec: str, value: Any) -> Any:
    if spec.startswith("choice:"):
        hint, meta = str, limits(choices=tuple(spec.split(":", 1)[1].split("|")))
    else:
        hint, meta = _SPEC_TYPES[spec]
    checked = check(value, hint, f"noise definition {path}", _field(f"params.{name}"), meta=meta)
    return list(checked) if isinstance(checked, tuple) else checked  # lists, as the definition key was made of


def parse_definition(raw: Any, path: Path) -> NoiseSource:
    """Validate one parsed YAML document; BadInputError names the file and the field."""
    d = build(DefinitionFile, raw, f"noise definition {path}", label=_field)
    specs = KIND_PARAMS[d.kind]
    given = d.params or {}
    extra = sorted(set(given) - set(specs))
    if extra:
        raise _fail(path, f"params.{extra[0]}", f"is not a parameter of kind '{d.kind}' (known: {', '.join(specs)})")
    params: dict[str, Any] = {}
    for pname, (spec, default) in specs.items():
        if pname in given:
            params[pname] = _check_param(path, pname, spec, given[pname])
        elif default is None:
            raise _fail(path, f"params.{pname}", f"is missing (required for kind '{d.kind}')")
        else:
            params[pname] = default
    return NoiseSource(
        name=d.name, version=d.version, kind=d.kind, description=d.description.strip(), params=params, path=path,
        provenance=d.provenance.strip(), licence=d.licence.strip(), comparable_to=d.comparable_to.strip(),
    )


def load_definition(path: Path) -> NoiseSource:
    """Read and validate one YAML file; its `name` must equal the file's stem."""
    source = parse_definition(read_yaml(path, "noise definition"), path)
    if source.name != path.stem:
        raise _fail(path, "name", f"must equal the file name '{path.stem}', got {source.name!r}")
    return source


def load_all(directory: Path | None = None, noise_dir: Path | str | None = None) -> dict[str, NoiseSource]:
    """Every `*.yaml` definition by name: of `directory` alone when given, else of `definition_dirs(noise_dir)`."""
    folders = [directory] if directory is not None else definition_dirs(noise_dir)
    found: dict[str, NoiseSource] = {}
    for folder in folders:
        if not folder.is_dir():
            raise BadInputError(f"noise definitions folder {folder} does not exist; set KWSBENCH_NOISE_DEFS")
        found.update((s.name, s) for s in (load_definition(p) for p in sorted(folder.glob("*.yaml"))))
    return found
