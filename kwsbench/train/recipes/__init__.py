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

from kwsbench.errors import BadInputError
from kwsbench.records import build, read_yaml

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
class Split:
    val_fraction: float = 0.2


@dataclass(frozen=True)
class Recipe:
    """A recipe as written in its file (checked by kwsbench.records)."""

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
    split: Split = field(default_factory=Split)
    augment: Augment = field(default_factory=Augment)

    @property
    def val_fraction(self) -> float:
        return self.split.val_fraction

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in every checkpoint's metadata. There `val_fraction` is a key of its own, not a
        `split` mapping: the checkpoints written so far hold it so, and one shape serves readers of both."""
        flat: dict[str, Any] = {}
        for key, value in _plain(dataclasses.asdict(self)).items():
            flat.update(value if key == "split" else {key: value})
        return flat


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


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
    if isinstance(raw, dict):  # a section with every line commented out reads as null: it means the defaults
        raw = {k: v for k, v in raw.items() if not (k in ("split", "augment") and v is None)}
    recipe = build(Recipe, raw, where)
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
    return recipe_from_dict(read_yaml(path, "recipe"), where=str(path))
