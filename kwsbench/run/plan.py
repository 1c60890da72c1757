"""The evaluation plan: what to run. A plan YAML can hold every field; command-line flags override it;
the resolved plan is saved with the run in the store."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kwsbench.errors import BadInputError
from kwsbench.noise.definitions import SNR_DEFINITIONS
from kwsbench.paths import default_store
from kwsbench.records import build, limits, read_mapping

if TYPE_CHECKING:
    from kwsbench.models.registry import ModelCard

DEFAULT_SNRS = (-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0)
RATE_MODES = ("native", "bandlimit")
# How a signal is brought down to a lower rate: "sinc" = torchaudio's band-limited resampler (anti-aliased),
# "drop" = keep every k-th sample with no filter (what S-Edge's original test does).
DECIMATIONS = ("sinc", "drop")


SNR_RANGE_DB = (-60.0, 60.0)  # beyond this a mixture is all speech or all noise at float32 precision
MIN_RATE_HZ = 1000  # below this a one-second clip is too short for any front end
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
ON_BAD_FILE = ("error", "skip")
# the arithmetic models are evaluated in (kwsbench.run.precision, which imports torch: named here for the loader)
PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "fp32"


def rates_problem(rates: list[int]) -> str:
    """What is wrong with these input rates ("" when nothing): `run` and `cost` take the same ones."""
    bad = [r for r in rates if r < MIN_RATE_HZ or 16000 % r]
    return f"holds {bad}: each rate must divide 16000 and be >= {MIN_RATE_HZ} Hz" if bad else ""


def device_problem(device: str) -> str:
    return "" if _DEVICE.match(device) else "is not a device (cpu, cuda, cuda:N or mps)"


@dataclass
class Plan:
    # None: every model whose weights are available; an empty list is refused (it would silently mean "all")
    models: list[str] | None = field(default=None, metadata=limits(
        nonempty=True, help="name at least one model (`kwsbench models list`), or leave it out for every model"))
    noise: list[str] = field(default_factory=list)
    snr: list[float] = field(default_factory=lambda: list(DEFAULT_SNRS), metadata=limits(
        lo=SNR_RANGE_DB[0], hi=SNR_RANGE_DB[1], help="give SNRs in dB within -60..60, e.g. -5 0 5"))
    snr_def: str = field(default="rms", metadata=limits(choices=SNR_DEFINITIONS, help="pick rms or active"))
    rates: list[int] = field(default_factory=lambda: [16000], metadata=limits(
        nonempty=True, check=rates_problem, help="e.g. 16000,8000,4000"))
    rate_mode: str = field(default="native", metadata=limits(choices=RATE_MODES, help="pick one of them"))
    decimation: str = field(default="sinc", metadata=limits(choices=DECIMATIONS, help="pick one of them"))
    data_dir: str | None = None
    protocol: str | None = None
    noise_dir: str | None = None
    seed: int = field(default=0, metadata=limits(lo=0, help="give a seed >= 0"))  # with `seeds`: the first of them
    # several noise seeds: every noisy condition once per seed (None: `seed` alone)
    seeds: list[int] | None = field(default=None, metadata=limits(
        nonempty=True, lo=0, help="give seeds >= 0 as a comma list, e.g. 0,1,2,3,4"))
    batch_size: int = field(default=256, metadata=limits(lo=1, help="give a batch size >= 1"))
    device: str = field(default="cpu", metadata=limits(check=device_problem, help="e.g. --device cpu"))
    quick: bool = False
    # clips per class of a class-stratified subset (None: all clips)
    per_class: int | None = field(default=None, metadata=limits(lo=1, help="give a count >= 1"))
    # $KWSBENCH_STORE, else runs/kwsbench.sqlite
    store: str = field(default_factory=lambda: str(default_store()),
                       metadata=limits(nonempty=True, help="give a file path"))
    force: bool = False
    checkpoints: dict[str, str] = field(default_factory=dict)  # model -> checkpoint id or file
    weights: str | None = None  # a project manifest (synth, gsc-mini): its checkpoint for every model it has
    cuda_graphs: bool = True  # replay captured CUDA graphs of each model's forward (same logits, fewer launches)
    # fp32 (the reference), or tf32 / bf16 on CUDA (kwsbench.run.precision); part of every cell's key
    precision: str = field(default=DEFAULT_PRECISION, metadata=limits(choices=PRECISIONS,
                                                                      help="pick fp32, tf32 or bf16"))
    # a clip that cannot be decoded or holds NaN / inf samples: stop with an error naming it, or leave it out
    on_bad_file: str = field(default="error", metadata=limits(choices=ON_BAD_FILE, help="pick error or skip"))

    def validate(self, where: str = "plan") -> Plan:
        """Every field checked against its type and limits (kwsbench.records); raises BadInputError."""
        checked = build(Plan, self.to_dict(), where)
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(checked, f.name))
        if self.seeds:
            self.seeds = list(dict.fromkeys(self.seeds))  # in order, each once
            self.seed = self.seeds[0]
        check_precision(self.precision, self.device, where)
        return self

    def noise_seeds(self) -> list[int]:
        """The seeds every noisy condition runs under (clean audio has no noise: its cell is seed-free)."""
        return list(self.seeds) if self.seeds else [self.seed]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_precision(precision: str, device: str, where: str = "plan") -> None:
    """tf32 and bf16 need CUDA: BadInputError (exit 5) on any other device.

    tf32 is a mode of NVIDIA's tensor cores: elsewhere it would silently be fp32. bf16 on a CPU is refused as
    well: CPU autocast has its own list of bf16 ops and other kernels than CUDA's, and a cell's key holds the
    precision but not the device, so a CPU bf16 cell would stand in for a different GPU computation (fp32 is
    the one precision whose CPU and GPU cells agree: 0 of 15,000 predictions differed on an H200). Nor would
    it pay on a CPU without bf16 instructions (the 2-core test machine has no avx512_bf16): see the README."""
    if precision != DEFAULT_PRECISION and not device.startswith("cuda"):
        raise BadInputError(
            f"{where}: precision {precision} needs a CUDA device (--device cuda), got device {device}: "
            f"{precision} is a GPU arithmetic mode; elsewhere cells are computed in fp32 (the default), so drop "
            "--precision (or the plan key) or run on a GPU")


def _split_list(value: Any) -> Any:
    """Accept 'a,b' strings as lists (YAML and flags both allow them); a lone value becomes a list of one."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value if isinstance(value, list) else [value]


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def plan_from_dict(data: dict[str, Any], where: str = "plan", text: bool = False) -> Plan:
    """A validated plan; `text`: values may be strings to parse (command-line flags, named as flags in errors)."""
    data = dict(data)
    for key in ("models", "noise", "snr", "rates", "seeds"):
        if key in data and data[key] is not None:
            data[key] = _split_list(data[key])
    return build(Plan, data, where, text=text, label=_flag if text else None).validate(where)


def load_plan(path: str | Path) -> Plan:
    return plan_from_dict(read_mapping(path, "plan file"), where=f"plan file {path}")


def resolve_plan(config: str | Path | None, overrides: dict[str, Any],
                 defaults: dict[str, Any] | None = None) -> Plan:
    """Plan defaults, then `defaults` (a preset such as QUICK_DEFAULTS), then the plan YAML (if any, checked on
    its own so its mistakes name the file), then every override that is not None (checked as command-line
    values): what the user gave, in a file or a flag, always wins over a preset."""
    base = Plan().to_dict() | (defaults or {})
    if config:
        base.update({k: v for k, v in load_plan(config).to_dict().items() if k in _read_keys(config)})
    given = {k: v for k, v in overrides.items() if v is not None}
    return plan_from_dict({**base, **given}, where="command line", text=True)


def _read_keys(config: str | Path) -> set[str]:
    return set(read_mapping(config, "plan file"))


def given_keys(config: str | Path | None, overrides: dict[str, Any]) -> set[str]:
    """The plan keys the user set, in the plan YAML or by a flag."""
    return (_read_keys(config) if config else set()) | {k for k, v in overrides.items() if v is not None}


EMBEDDED_MANIFEST = "synth"  # the project's own weights, trained on the embedded synthetic keyword set


@dataclass(frozen=True)
class LeftOut:
    """A model of the default set, or one that 'all' or a glob swept in, that the plan does not run, and why."""

    model: str
    reason: str


DID_NOT_LEARN = "its weights did not learn (at chance; manifest: learned: false); --models runs them anyway"
SLOW_ON_CPU = "slow on a CPU (over 7 s a cell; manifest: quick: false); --models runs them"


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
                left.append(LeftOut(e.model, DID_NOT_LEARN))
            elif not e.quick and (quick or plan.device == "cpu"):
                left.append(LeftOut(e.model, SLOW_ON_CPU))
            else:
                plan.models.append(e.model)
    return apply_weights(plan), left


def models_with_weights(plan: Plan) -> tuple[Plan, list[LeftOut]]:
    """--data-dir without --models and --weights: every registered model whose checkpoint file is here. The others
    are left out before the run, with why, so the cells announced and the time estimated are those of the models
    that run (counting all of them announced 80 cells and 18 min for a 22-cell, 12-s run)."""
    from kwsbench.models.registry import all_cards

    left: list[LeftOut] = []
    if plan.models is not None or plan.weights is not None:
        return plan, left
    plan.models = []
    for card in all_cards():
        reason = missing_weights(card, plan)
        if reason:
            left.append(LeftOut(card.name, reason))
        else:
            plan.models.append(card.name)
    if not plan.models:  # nothing to run: `kwsbench run` stops before the run ("nothing to run", exit 1)
        plan.models = None
    return plan, left


def swept_models_with_weights(plan: Plan) -> tuple[Plan, list[LeftOut]]:
    """--models with 'all' or a glob: the models the pattern swept in that have no weights here are left out before
    the run, with why, as above (`--weights synth --models all` announced, then failed, the 72 cells of the two
    KWT sizes whose files are not shipped). A model named directly stays: its cells fail and say why."""
    from kwsbench.models.registry import has_pattern, named_directly, resolve

    if not plan.models or not has_pattern(plan.models):  # names only: each runs (or fails) as asked
        return plan, []
    named = named_directly(plan.models)
    keep: list[str] = []
    left: list[LeftOut] = []
    for card in resolve(plan.models):
        reason = None if card.name in named else missing_weights(card, plan)
        if reason:
            left.append(LeftOut(card.name, reason))
        else:
            keep.append(card.name)
    if not keep:
        # nothing would be left, and `models: None` means every registered model: the pattern stays (an API run
        # skips its models and runs nothing else); `kwsbench run` stops before the run ("nothing to run", exit 1)
        return plan, left
    plan.models = keep
    return plan, left


def missing_weights(card: ModelCard, plan: Plan) -> str | None:
    """Why the card has no weights file here for this plan, or None when it has one (its sha256 is checked when
    it is loaded)."""
    from kwsbench.checkpoints import resolve_checkpoint
    from kwsbench.errors import CheckpointError

    reference = plan.checkpoints.get(card.name) or card.checkpoint
    if not reference:
        if plan.weights:
            return (f"no weights in the {plan.weights} manifest (`kwsbench checkpoints list`; "
                    "`kwsbench train MODEL` makes them)")  # no model name: one line for all such models
        return NO_PUBLIC_WEIGHTS
    try:
        resolve_checkpoint(reference)
    except CheckpointError:
        manifest = str(reference).split(":", 1)[0] if ":" in str(reference) else ""
        return not_imported(manifest)
    return None


NO_PUBLIC_WEIGHTS = ("no public weights (the project's own: --weights synth or gsc-mini, see `kwsbench models list`; "
                     "or `kwsbench train MODEL`)")


def not_imported(manifest: str) -> str:
    if not manifest:  # a checkpoint file named in the plan or the card that is not there
        return "checkpoint file not found (`kwsbench checkpoints list` shows what is present)"
    from kwsbench.paths import shared_dir

    fetch = "fetch" if manifest == "nc-ssm" else f"fetch --manifest {manifest}"  # fetch's default manifest
    shared = shared_dir() / "checkpoints" / manifest
    source = shared if shared.is_dir() else "DIR"  # the team's copy, named only where it is there (works as written)
    return (f"public {manifest} weights not imported here (`kwsbench checkpoints import {source}` or "
            f"`kwsbench checkpoints {fetch}`)")


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


def check_inputs(plan: Plan) -> None:
    """What a run refuses whichever models it runs (an unknown model name, a missing or unknown data folder, a
    protocol it cannot serve, an unknown noise source), said before the models are chosen: with no weights here
    yet every model is left out, and these errors were hidden behind 'nothing to run' (exit 1)."""
    from kwsbench.data.speech_commands import check_request
    from kwsbench.models.registry import resolve
    from kwsbench.noise import resolve_name

    if plan.models:
        resolve(plan.models)  # an unknown name (exit 5) also in `kwsbench.plan()`, not only once a run starts
    if plan.data_dir is not None:
        check_request(plan.data_dir, plan.protocol)
    for name in plan.noise:
        resolve_name(name, plan.noise_dir)


def check_noise_and_snr(plan: Plan, given: set[str]) -> None:
    """SNRs without a noise source would silently run clean audio only."""
    if "snr" in given and not plan.noise:
        raise BadInputError("--snr was given without --noise, so no noisy condition would run; add --noise "
                            "SOURCE (see `kwsbench noise list`), e.g. --noise babble --snr -5")
