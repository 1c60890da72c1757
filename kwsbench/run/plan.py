"""The evaluation plan: what to run. A plan YAML can hold every field; command-line flags override it;
the resolved plan is saved with the run in the store."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kwsbench.errors import BadInputError

DEFAULT_SNRS = (-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0)
RATE_MODES = ("native", "bandlimit")
# How a signal is brought down to a lower rate: "sinc" = torchaudio's band-limited resampler (anti-aliased),
# "drop" = keep every k-th sample with no filter (what S-Edge's original test does).
DECIMATIONS = ("sinc", "drop")
SNR_DEFINITIONS = ("rms", "active")


@dataclass
class Plan:
    models: list[str] | None = None  # None: every model whose weights are available
    noise: list[str] = field(default_factory=list)
    snr: list[float] = field(default_factory=lambda: list(DEFAULT_SNRS))
    snr_def: str = "rms"
    rates: list[int] = field(default_factory=lambda: [16000])
    rate_mode: str = "native"
    decimation: str = "sinc"
    data_dir: str | None = None
    protocol: str | None = None
    noise_dir: str | None = None
    seed: int = 0  # the noise seed; with `seeds`, the first of them
    seeds: list[int] | None = None  # several noise seeds: every noisy condition once per seed
    batch_size: int = 256
    device: str = "cpu"
    quick: bool = False
    per_class: int | None = None  # clips per class of a class-stratified subset (None: all clips)
    store: str = "runs/kwsbench.sqlite"
    force: bool = False
    checkpoints: dict[str, str] = field(default_factory=dict)  # model -> checkpoint id or file
    weights: str | None = None  # a project manifest (synth, gsc-mini): its checkpoint for every model it has
    cuda_graphs: bool = True  # replay captured CUDA graphs of each model's forward (same logits, fewer launches)

    def validate(self) -> Plan:
        if self.rate_mode not in RATE_MODES:
            raise BadInputError(f"rate_mode {self.rate_mode!r} is not one of {', '.join(RATE_MODES)}")
        if self.decimation not in DECIMATIONS:
            raise BadInputError(f"decimation {self.decimation!r} is not one of {', '.join(DECIMATIONS)}")
        if self.snr_def not in SNR_DEFINITIONS:
            raise BadInputError(f"snr_def {self.snr_def!r} is not one of {', '.join(SNR_DEFINITIONS)}")
        if self.batch_size < 1:
            raise BadInputError(f"batch_size must be >= 1, got {self.batch_size}")
        bad_rates = [r for r in self.rates if int(r) <= 0 or 16000 % int(r)]
        if bad_rates:
            raise BadInputError(f"rates {bad_rates}: each rate must divide 16000 (e.g. 16000,8000,4000)")
        if self.per_class is not None and self.per_class < 1:
            raise BadInputError(f"per_class must be >= 1, got {self.per_class}")
        if self.seeds is not None:
            if not self.seeds:
                raise BadInputError("seeds must list at least one seed, e.g. 0,1,2,3,4")
            self.seeds = list(dict.fromkeys(int(s) for s in self.seeds))  # in order, each once
            self.seed = self.seeds[0]
        self.snr = [float(s) for s in self.snr]
        self.rates = [int(r) for r in self.rates]
        return self

    def noise_seeds(self) -> list[int]:
        """The seeds every noisy condition runs under (clean audio has no noise seed: it runs once)."""
        return list(self.seeds) if self.seeds else [self.seed]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(Plan)}


def _split_list(value: Any) -> Any:
    """Accept 'a,b' strings as lists (YAML and flags both allow them)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def plan_from_dict(data: dict[str, Any], where: str = "plan") -> Plan:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise BadInputError(
            f"{where}: unknown key(s) {', '.join(unknown)}. Known keys: {', '.join(sorted(_FIELDS))}."
        )
    data = dict(data)
    for key in ("models", "noise", "snr", "rates", "seeds"):
        if key in data and data[key] is not None:
            data[key] = _split_list(data[key])
            if not isinstance(data[key], list):
                data[key] = [data[key]]
    try:
        return Plan(**data).validate()
    except (TypeError, ValueError) as err:
        raise BadInputError(f"{where}: {err}") from err


def load_plan(path: str | Path) -> Plan:
    return plan_from_dict(_read_yaml(path), where=str(path))


def _read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"plan file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BadInputError(f"plan file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise BadInputError(f"plan file {path} must hold a mapping of plan keys, got {type(data).__name__}")
    return data


def resolve_plan(config: str | Path | None, overrides: dict[str, Any],
                 defaults: dict[str, Any] | None = None) -> Plan:
    """Plan defaults, then `defaults` (e.g. QUICK_DEFAULTS), then the plan YAML (if any), then every override
    that is not None: what the user gave, in a file or a flag, always wins over a preset."""
    base = Plan().to_dict() | (defaults or {})
    if config:
        base.update(_read_yaml(config))
    base.update({k: v for k, v in overrides.items() if v is not None})
    return plan_from_dict(base, where=str(config) if config else "command line")


def given_keys(config: str | Path | None, overrides: dict[str, Any]) -> set[str]:
    """The plan keys the user set, in the plan YAML or by a flag."""
    return set(_read_yaml(config) if config else {}) | {k for k, v in overrides.items() if v is not None}


EMBEDDED_MANIFEST = "synth"  # the project's own weights, trained on the embedded synthetic keyword set


@dataclass(frozen=True)
class LeftOut:
    """A model of the default set that the plan does not run, and why."""

    model: str
    reason: str


def embedded_defaults(plan: Plan, quick: bool = False) -> tuple[Plan, list[LeftOut]]:
    """No --data-dir and no --models: the embedded synthetic set, evaluated with the weights the project trained
    on it (checkpoints/synth.yaml), so the main job needs nothing downloaded or imported. Left out (and
    returned with the reason): entries marked `learned: false` (training stayed at chance) always, and entries
    marked `quick: false` (over 7 s a cell on a 2-core CPU) on a CPU or with --quick. Named with --models,
    every one of them runs."""
    left: list[LeftOut] = []
    if plan.data_dir is None and plan.models is None and plan.weights is None:
        plan.weights = EMBEDDED_MANIFEST
        plan.models = []
        for e in _weight_entries(plan.weights):
            if not e.learned:
                left.append(LeftOut(e.model, "its weights did not learn (at chance; manifest: learned: false)"))
            elif not e.quick and (quick or plan.device == "cpu"):
                left.append(LeftOut(e.model, "slow on a CPU (over 7 s a cell; manifest: quick: false)"))
            else:
                plan.models.append(e.model)
    return apply_weights(plan), left


def apply_weights(plan: Plan) -> Plan:
    """--weights M: every planned model that manifest M has gets its checkpoint (an explicit per-model checkpoint
    stays); with no --models, the plan is every model of M."""
    if plan.weights is None:
        return plan
    entries = _weight_entries(plan.weights)
    if plan.models is None:
        plan.models = [e.model for e in entries]
    plan.checkpoints = {e.model: f"{plan.weights}:{e.id}" for e in entries} | plan.checkpoints
    return plan


def _weight_entries(manifest: str):
    from kwsbench.checkpoints import get_manifest

    return get_manifest(manifest).entries


# --quick fills in what the user did not give (a flag or a plan-file key always wins)
QUICK_DEFAULTS: dict[str, Any] = {"quick": True, "noise": ["factory"], "snr": [0.0], "per_class": 20}


def check_noise_and_snr(plan: Plan, given: set[str]) -> None:
    """SNRs without a noise source would silently run clean audio only."""
    if "snr" in given and not plan.noise:
        raise BadInputError("--snr was given without --noise, so no noisy condition would run; add --noise "
                            "SOURCE (see `kwsbench noise list`), e.g. --noise babble --snr -5")
