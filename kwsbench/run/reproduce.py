"""Reproduce: run the published checkpoints, then judge every stored cell against the papers' rows.

Running is the runner's; judging is `results.verdicts` (pure functions of stored cells and baseline rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kwsbench.paths import default_store
from kwsbench.results.baselines import load_baselines
from kwsbench.results.verdicts import DEVIATES, Comparison, matching_rows, verdict

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
    store: str = field(default_factory=lambda: str(default_store()))  # $KWSBENCH_STORE or runs/kwsbench.sqlite
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
    from kwsbench import checkpoints as ck
    from kwsbench.errors import CheckpointError

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
    from kwsbench.models.registry import all_cards, resolve
    from kwsbench.results.store import Store
    from kwsbench.run.plan import Plan
    from kwsbench.run.runner import run_plan

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
            if cell.cell_key not in wanted:
                continue
            protocol = cell.protocol
            rows = matching_rows(baselines, aliases.get(cell.model, {cell.model}), cell)
            if not rows:
                unmatched.append(cell)
            comparisons.extend((cell, verdict(r, cell, opts.tol)) for r in rows)
    return ReproduceReport(comparisons, unmatched, summary.failed, summary.clips, summary.seconds, protocol)
