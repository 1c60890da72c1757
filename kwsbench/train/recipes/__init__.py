"""Training recipes: a YAML file per paper, validated against a schema before anything trains.

A recipe names the optimiser and its parameter groups, the learning-rate schedule (linear warm-up,
then cosine down to `min_lr_ratio`), label smoothing, gradient clipping, an optional orthogonality
penalty, the train/validation split and the augmentation. Unknown or mistyped keys fail with a
BadInputError naming the file and the key, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kwsbench.errors import BadInputError

RECIPE_DIR = Path(__file__).resolve().parent
OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass(frozen=True)
class ParamGroup:
    """Parameters whose leaf name contains any of `contains` (case-sensitive) get this lr scale and decay."""

    name: str
    contains: tuple[str, ...]
    lr_scale: float = 1.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Orthogonality:
    """Loss += weight * sqrt(mean((W W^T * (1 - I))^2)) on the named 2-D weight (S-Edge's decoder penalty)."""

    param: str
    weight: float


@dataclass(frozen=True)
class NoiseAugment:
    p: float
    sources: tuple[str, ...]
    snr_db: tuple[float, float]


@dataclass(frozen=True)
class GaussianNoise:
    p: float
    sigma: float


@dataclass(frozen=True)
class SpecAugment:
    """Masks on the output of the model's submodule `module` (its log-mel front end), training only."""

    module: str = "frontend"
    freq_masks: int = 2
    freq_width: int = 7
    time_masks: int = 2
    time_width: int = 20


@dataclass(frozen=True)
class Augment:
    time_shift_ms: float = 0.0
    gain: tuple[float, float] | None = None
    gaussian_noise: GaussianNoise | None = None
    noise: NoiseAugment | None = None
    specaugment: SpecAugment | None = None
    rzoh: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    default_lr_scale: float = 1.0
    param_groups: tuple[ParamGroup, ...] = ()
    warmup_steps: int = 0
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    orthogonality: Orthogonality | None = None
    val_fraction: float = 0.2
    augment: Augment = field(default_factory=Augment)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in every checkpoint's metadata."""
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# Schema: key -> (type spec, required). Type specs: "float", "int", "bool", "str", "pair" (two numbers),
# "strs" (list of strings), a dict (nested mapping), ("list", dict) (list of mappings); "?" suffix or
# a None-able entry allows null.
_PARAM_GROUP = {"name": ("str", True), "contains": ("strs", True), "lr_scale": ("float", False),
                "weight_decay": ("float", False)}
_AUGMENT = {
    "time_shift_ms": ("float", False),
    "gain": ("pair?", False),
    "gaussian_noise": ({"p": ("float", True), "sigma": ("float", True)}, False),
    "noise": ({"p": ("float", True), "sources": ("strs", True), "snr_db": ("pair", True)}, False),
    "specaugment": ({"module": ("str", False), "freq_masks": ("int", False), "freq_width": ("int", False),
                     "time_masks": ("int", False), "time_width": ("int", False)}, False),
    "rzoh": ("bool", False),
}
SCHEMA: dict[str, tuple[Any, bool]] = {
    "name": ("str", True), "source": ("str", True), "optimizer": ("str", True), "lr": ("float", True),
    "epochs": ("int", True), "batch_size": ("int", True), "weight_decay": ("float", False),
    "momentum": ("float", False), "nesterov": ("bool", False), "default_lr_scale": ("float", False),
    "param_groups": (("list", _PARAM_GROUP), False), "warmup_steps": ("int", False),
    "warmup_epochs": ("int", False), "min_lr_ratio": ("float", False), "label_smoothing": ("float", False),
    "grad_clip": ("float?", False), "orthogonality": ({"param": ("str", True), "weight": ("float", True)}, False),
    "split": ({"val_fraction": ("float", False)}, False),
    "augment": (_AUGMENT, False),
}


def _type_ok(spec: str, value: Any) -> bool:
    if spec.endswith("?"):
        return value is None or _type_ok(spec[:-1], value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    checks = {
        "float": number,
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "pair": isinstance(value, list) and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
        "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }
    return checks[spec]


def validate(raw: Any, schema: dict[str, tuple[Any, bool]], where: str, prefix: str = "") -> None:
    """Raise BadInputError naming `where` and the dotted key for the first unknown, missing or mistyped key."""
    if not isinstance(raw, dict):
        raise BadInputError(f"{where}: {prefix or 'the recipe'} must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in schema:
            raise BadInputError(
                f"{where}: unknown key {prefix}{key!s}. Known keys here: {', '.join(sorted(schema))}")
    for key, (spec, required) in schema.items():
        dotted = f"{prefix}{key}"
        if key not in raw:
            if required:
                raise BadInputError(f"{where}: missing required key {dotted}")
            continue
        value = raw[key]
        if isinstance(spec, dict):
            if value is not None:
                validate(value, spec, where, f"{dotted}.")
        elif isinstance(spec, tuple):
            if not isinstance(value, list):
                raise BadInputError(f"{where}: key {dotted} must be a list, got {type(value).__name__}")
            for i, item in enumerate(value):
                validate(item, spec[1], where, f"{dotted}[{i}].")
        elif not _type_ok(spec, value):
            raise BadInputError(f"{where}: key {dotted} must be of type {spec.rstrip('?')}, got {value!r}")


def _check_values(r: Recipe, where: str) -> None:
    problems = []
    if r.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer {r.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if r.lr <= 0 or r.epochs < 1 or r.batch_size < 1:
        problems.append("lr must be > 0, epochs and batch_size >= 1")
    if not 0.0 < r.val_fraction < 1.0:
        problems.append(f"split.val_fraction must be in (0, 1), got {r.val_fraction}")
    if not 0.0 <= r.label_smoothing < 1.0:
        problems.append(f"label_smoothing must be in [0, 1), got {r.label_smoothing}")
    a = r.augment
    if a.gain and not 0 < a.gain[0] <= a.gain[1]:
        problems.append(f"augment.gain must be [low, high] with 0 < low <= high, got {list(a.gain)}")
    if a.noise and (not 0 <= a.noise.p <= 1 or not a.noise.sources or a.noise.snr_db[0] > a.noise.snr_db[1]):
        problems.append("augment.noise needs p in [0, 1], at least one source and snr_db [low, high]")
    if problems:
        raise BadInputError(f"{where}: " + "; ".join(problems))


def recipe_from_dict(raw: Any, where: str = "recipe") -> Recipe:
    validate(raw, SCHEMA, where)
    raw = dict(raw)
    aug = dict(raw.pop("augment", None) or {})
    split = raw.pop("split", None) or {}
    augment = Augment(
        time_shift_ms=float(aug.get("time_shift_ms", 0.0)),
        gain=tuple(float(v) for v in aug["gain"]) if aug.get("gain") else None,
        gaussian_noise=GaussianNoise(**aug["gaussian_noise"]) if aug.get("gaussian_noise") else None,
        noise=NoiseAugment(p=float(aug["noise"]["p"]), sources=tuple(aug["noise"]["sources"]),
                           snr_db=tuple(float(v) for v in aug["noise"]["snr_db"])) if aug.get("noise") else None,
        specaugment=SpecAugment(**aug["specaugment"]) if aug.get("specaugment") is not None else None,
        rzoh=bool(aug.get("rzoh", False)),
    )
    groups = tuple(ParamGroup(name=g["name"], contains=tuple(g["contains"]), lr_scale=float(g.get("lr_scale", 1.0)),
                              weight_decay=float(g.get("weight_decay", 0.0))) for g in raw.pop("param_groups", []))
    ortho = raw.pop("orthogonality", None)
    floats = ("lr", "weight_decay", "momentum", "default_lr_scale", "min_lr_ratio", "label_smoothing")
    kwargs = {k: float(v) if k in floats else v for k, v in raw.items()}
    if kwargs.get("grad_clip") is not None:
        kwargs["grad_clip"] = float(kwargs["grad_clip"])
    recipe = Recipe(**kwargs, param_groups=groups, augment=augment,
                    orthogonality=Orthogonality(ortho["param"], float(ortho["weight"])) if ortho else None,
                    val_fraction=float(split.get("val_fraction", 0.2)))
    _check_values(recipe, where)
    return recipe


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_file: str | Path) -> Recipe:
    """A packaged recipe by name (`kwsbench/recipes/<name>.yaml`) or a YAML file path."""
    path = Path(name_or_file).expanduser()
    if not path.is_file():
        packaged = RECIPE_DIR / f"{name_or_file}.yaml"
        if not packaged.is_file():
            raise BadInputError(
                f"recipe {name_or_file!r} is neither a file nor a packaged recipe ({', '.join(list_recipes())})")
        path = packaged
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BadInputError(f"cannot read recipe {path}: {err}") from err
    return recipe_from_dict(raw, where=str(path))
