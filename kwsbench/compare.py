"""Published numbers vs measured cells, and paired model comparisons.

- Baselines: `baselines/*.yaml`, one file per paper (loaded and validated here).
- Verdicts: MATCH (|measured - reported| <= tol), WITHIN_CI (reported value inside the measured
  interval), DEVIATES, NOT_COMPARABLE (protocol, class set, split, SNR definition, rate or an
  unverified number differ; still shown side by side).
- `paired_tests`: exact McNemar per shared condition between two models, Benjamini-Hochberg over the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kwsbench import stats
from kwsbench.errors import BadInputError
from kwsbench.paths import PROJECT_ROOT

MATCH, WITHIN_CI, DEVIATES, NOT_COMPARABLE = "MATCH", "WITHIN_CI", "DEVIATES", "NOT_COMPARABLE"
VERIFICATION = {
    "P": "primary source", "P-draft": "primary, self-reported draft (not peer reviewed)",
    "P-zoo": "official model-zoo card", "S": "secondary copy", "D": "derived from the authors' code",
    "U": "unverified: not a tolerance target",
}
METRICS = ("accuracy",)
_ROW_KEYS = {"model", "protocol", "classes", "split", "condition", "metric", "value", "source", "verification",
             "snr_def", "rate_hz", "note", "std"}
_FILE_KEYS = {"paper", "citation", "defaults", "rows", "notes"}


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
    return Reported(
        paper=paper, model=str(r["model"]).lower(), protocol=str(r["protocol"]).lower(), classes=int(r["classes"]),
        split=r["split"], noise=noise, snr_db=snr, snr_def="" if noise == "clean" else str(r.get("snr_def", "rms")),
        rate_hz=int(r.get("rate_hz", 16000)), metric=metric, value=value, source=str(r["source"]),
        verification=r["verification"], note=str(r.get("note", "")),
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
    rows = [_row(data["paper"], raw, defaults, f"{path.name} row {i + 1}") for i, raw in enumerate(data["rows"])]
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


@dataclass
class Comparison:
    reported: Reported
    measured: float | None  # percent
    ci: tuple[float, float] | None  # percent
    verdict: str
    reasons: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.reported.value


def comparability(rep: Reported, cell: dict) -> list[str]:
    """Why a reported row and a measured cell cannot be compared (empty: comparable)."""
    reasons = []
    if rep.protocol != str(cell["protocol"]).lower():
        reasons.append(f"protocol: reported {rep.protocol}, measured {cell['protocol']}")
    if rep.classes != len(cell["label_names"]):
        reasons.append(f"class set: reported {rep.classes}, measured {len(cell['label_names'])}")
    if rep.split != "test":
        reasons.append(f"reported on the {rep.split} split")
    if rep.noise != "clean" and rep.snr_def != cell["snr_def"]:
        reasons.append(f"SNR definition: reported {rep.snr_def}, measured {cell['snr_def']}")
    if rep.rate_hz != cell["rate_hz"]:
        reasons.append(f"rate: reported {rep.rate_hz}, measured {cell['rate_hz']}")
    if rep.verification == "U":
        reasons.append("reported value unverified")
    return reasons


def verdict(rep: Reported, cell: dict, tol: float = 2.0) -> Comparison:
    """Compare one reported row with one measured cell (accuracy in 0..1 in the cell)."""
    measured = 100.0 * cell["accuracy"]
    # the measured interval: the union of Wilson and (where present) the speaker bootstrap interval
    lows = [v for v in (cell.get("ci_low"), cell.get("boot_low")) if v is not None]
    highs = [v for v in (cell.get("ci_high"), cell.get("boot_high")) if v is not None]
    ci = (100.0 * min(lows), 100.0 * max(highs)) if lows and highs else None
    reasons = comparability(rep, cell)
    if reasons:
        return Comparison(rep, measured, ci, NOT_COMPARABLE, reasons)
    if abs(measured - rep.value) <= tol + 1e-9:
        return Comparison(rep, measured, ci, MATCH)
    if ci and ci[0] <= rep.value <= ci[1]:
        return Comparison(rep, measured, ci, WITHIN_CI)
    return Comparison(rep, measured, ci, DEVIATES)


def matching_rows(baselines: list[Reported], model_names: set[str], cell: dict) -> list[Reported]:
    """Reported rows for the cell's model (any of its names) and condition."""
    return [r for r in baselines if r.model in model_names and r.noise == cell["noise"]
            and (r.snr_db is None if cell["snr_db"] is None else r.snr_db == cell["snr_db"])]


# -- paired tests --------------------------------------------------------------------------------

_PAIR_COLS = ("fingerprint", "noise", "noise_version", "snr_db", "snr_def", "rate_hz", "rate_mode", "decimation",
              "seed")


@dataclass
class PairedTest:
    condition: dict[str, Any]
    acc_a: float
    acc_b: float
    n: int
    only_a: int
    only_b: int
    p_value: float
    q_value: float = 1.0
    significant: bool = False


def paired_tests(store, model_a: str, model_b: str, alpha: float = 0.05) -> list[PairedTest]:
    """Exact McNemar per condition both models were measured under (same clips), BH over all of them."""
    cells_a = {tuple(c[k] for k in _PAIR_COLS): c for c in store.cells(model=model_a)}
    cells_b = {tuple(c[k] for k in _PAIR_COLS): c for c in store.cells(model=model_b)}
    shared = sorted(set(cells_a) & set(cells_b), key=lambda k: (k[1], -1e9 if k[3] is None else k[3], k[5]))
    if not shared:
        raise BadInputError(f"no condition measured for both {model_a!r} and {model_b!r} on the same clips; "
                            "run both with `kwsbench run` first")
    tests = []
    for key in shared:
        a, b = cells_a[key], cells_b[key]
        _, _, labels = store.clips(a["fingerprint"])
        ca = store.predictions(a["cell_key"]) == labels
        cb = store.predictions(b["cell_key"]) == labels
        res = stats.mcnemar_exact(ca, cb)
        tests.append(PairedTest(dict(zip(_PAIR_COLS, key, strict=True)), float(ca.mean()), float(cb.mean()),
                                len(labels), res.only_a, res.only_b, res.p_value))
    q, reject = stats.benjamini_hochberg(np.array([t.p_value for t in tests]), alpha)
    for t, qv, rj in zip(tests, q, reject, strict=True):
        t.q_value, t.significant = float(qv), bool(rj)
    return tests


# -- reproduce -----------------------------------------------------------------------------------

NCSSM_NOISES = ("factory-ncssm", "white-ncssm", "babble-synthetic-ncssm", "street-ncssm", "pink-ncssm")
PUBLIC_MANIFESTS = ("nc-ssm",)  # manifests of published checkpoints (the project's own synth weights are not)
QUICK_PER_CLASS = 20


@dataclass
class ReproduceOptions:
    models: list[str] | None = None
    data_dir: str | None = None
    protocol: str | None = None
    noise_type: str = "factory-ncssm"
    snr: list[float] = field(default_factory=lambda: [0.0])
    full: bool = False
    quick: bool = False
    tol: float = 2.0
    seed: int = 0
    batch_size: int = 256
    device: str = "cpu"
    store: str = "runs/kwsbench.sqlite"
    force: bool = False
    baselines: str | None = None  # folder of baseline YAML files (default: the project's baselines/)


@dataclass
class ReproduceReport:
    comparisons: list[tuple[dict, Comparison]]
    unmatched: list[dict]  # measured cells no paper reports
    failed: list[tuple[str, str, str]]
    clips: int
    seconds: float
    protocol: str

    @property
    def deviates(self) -> list[tuple[dict, Comparison]]:
        return [(c, v) for c, v in self.comparisons if v.verdict == DEVIATES]

    def exit_code(self) -> int:
        return 1 if self.deviates or self.failed else 0


def public_models() -> list[str]:
    from kwsbench.models.registry import all_cards

    return [c.name for c in all_cards() if c.checkpoint and c.checkpoint.split(":", 1)[0] in PUBLIC_MANIFESTS]


def _default_data_dir() -> str:
    from kwsbench.errors import DatasetError
    from kwsbench.paths import shared_dir

    dev = shared_dir() / "data" / "gsc_v2_test_dev"
    if dev.is_dir():
        return str(dev)
    raise DatasetError(f"no dataset given and {dev} not found: pass --data-dir with a Speech Commands v0.02 folder "
                       "(`kwsbench data download` fetches one)")


def _check_weights(cards, device: str) -> None:
    """Exit 3 before any work when a requested model has no loadable checkpoint."""
    from kwsbench.errors import CheckpointError, MissingDependencyError

    try:
        from kwsbench import checkpoints as ck
    except ImportError as err:
        raise MissingDependencyError(f"the checkpoint loader is not available ({err})") from err
    missing = []
    for card in cards:
        try:
            ck.load_model(card, device=device)
        except CheckpointError as err:
            missing.append(f"{card.name}: {err}")
    if missing:
        raise CheckpointError("no usable checkpoint for " + "; ".join(missing) +
                              ". Import them: `kwsbench checkpoints import ../shared/checkpoints/nc-ssm`.")


def run_reproduce(opts: ReproduceOptions, show_progress: bool = True) -> ReproduceReport:
    """Evaluate the published checkpoints under the asked conditions and compare with baselines/*.yaml."""
    from kwsbench.evaluate import run_plan
    from kwsbench.models.registry import all_cards, resolve
    from kwsbench.plan import Plan
    from kwsbench.store import Store

    names = opts.models or public_models()
    if not names:
        from kwsbench.errors import CheckpointError

        raise CheckpointError("no model card points at a published checkpoint; pass --models")
    cards = resolve(names)
    data_dir = opts.data_dir or _default_data_dir()
    from kwsbench.data.speech_commands import resolve_root

    resolve_root(data_dir, opts.protocol)  # DatasetError (exit 4) before any model work
    _check_weights(cards, opts.device)
    if opts.full:
        noises, snrs = list(NCSSM_NOISES), [-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0]
    else:
        noises, snrs = [opts.noise_type], [float(s) for s in opts.snr]
    plan = Plan(models=[c.name for c in cards], noise=noises, snr=snrs, data_dir=data_dir,
                protocol=opts.protocol, seed=opts.seed, batch_size=opts.batch_size, device=opts.device,
                per_class=QUICK_PER_CLASS if opts.quick else None, quick=opts.quick, store=opts.store,
                force=opts.force).validate()
    summary = run_plan(plan, show_progress=show_progress)
    baselines = load_baselines(Path(opts.baselines) if opts.baselines else None)
    aliases = {c.name: {c.name, *c.aliases} for c in all_cards()}
    comparisons, unmatched, protocol = [], [], ""
    with Store(plan.store) as store:
        wanted = set(summary.cell_keys)
        for cell in store.cells():
            if cell["cell_key"] not in wanted:
                continue
            protocol = cell["protocol"]
            rows = matching_rows(baselines, aliases.get(cell["model"], {cell["model"]}), cell)
            if not rows:
                unmatched.append(cell)
            comparisons.extend((cell, verdict(r, cell, opts.tol)) for r in rows)
    return ReproduceReport(comparisons, unmatched, summary.failed, summary.clips, summary.seconds, protocol)
