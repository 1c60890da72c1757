"""The Python API: the library functions the commands call, for notebooks and scripts.

Each function has the CLI's defaults and raises the CLI's errors (`KwsbenchError` subclasses carrying
the exit code); none of them exits the process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas
    import torch

    from kwsbench.cost import Cost
    from kwsbench.run.plan import Plan
    from kwsbench.run.reproduce import ReproduceOptions, ReproduceReport
    from kwsbench.run.runner import RunSummary

DEFAULT_RATES = (16000, 8000, 4000)


def run(plan: Plan | None = None, *, show_progress: bool = False, **fields: Any) -> RunSummary:
    """Evaluate a plan (or `Plan(**fields)`) into its store; returns the run's summary."""
    from kwsbench.run.plan import Plan
    from kwsbench.run.runner import run_plan

    plan = (plan or Plan(**fields)).validate()
    return run_plan(plan, show_progress=show_progress)


def reproduce(options: ReproduceOptions | None = None, *, show_progress: bool = False,
              **fields: Any) -> ReproduceReport:
    """Run the published checkpoints and judge them against the papers' rows."""
    from kwsbench.run.reproduce import ReproduceOptions, run_reproduce

    return run_reproduce(options or ReproduceOptions(**fields), show_progress=show_progress)


def load_model(name: str, weights: str | None = None, device: str = "cpu") -> torch.nn.Module:
    """A registry model with verified weights (`weights`: None for the card's own, '<manifest>:<id>' or a path)."""
    from kwsbench.checkpoints import load_model as _load

    return _load(name, weights, device=device)


def cost(models: str | Iterable[str] | None = None, rates: Iterable[int] = DEFAULT_RATES) -> list[Cost]:
    """Parameters and MACs of each model (names, globs or 'all') at each rate."""
    from kwsbench.cost import model_cost
    from kwsbench.models.registry import all_cards, resolve

    names = [models] if isinstance(models, str) else list(models or [])
    cards = resolve(names) if names else all_cards()
    return [model_cost(card, int(rate)) for card in cards for rate in rates]


def results(store: str | None = None, **filters: Any) -> pandas.DataFrame:
    """One row per stored cell, the leaderboard's tidy columns; `filters` keep cells whose column equals the value."""
    import pandas

    from kwsbench.results.leaderboard import tidy_rows
    from kwsbench.results.store import DEFAULT_STORE, Store

    with Store(store or DEFAULT_STORE, read_only=True) as st:
        cells = st.cells(**filters)
    return pandas.DataFrame([vars(r) for r in tidy_rows(cells)])
