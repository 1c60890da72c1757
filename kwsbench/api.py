"""The Python API: the library functions the commands call, for notebooks and scripts.

Each function has the CLI's defaults and raises the CLI's errors (`KwsbenchError` subclasses carrying the exit
code in `.exit_code`); none of them exits the process. Heavy modules (torch, the model zoo, pandas) are imported
inside the functions, so `import kwsbench` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

    from kwsbench.checkpoints import LoadedModel
    from kwsbench.cost import Cost
    from kwsbench.results.leaderboard import TidyRow
    from kwsbench.run.plan import LeftOut, Plan
    from kwsbench.run.reproduce import ReproduceReport
    from kwsbench.run.runner import RunSummary

DEFAULT_RATES = (16000, 8000, 4000)


def plan(config: str | Path | None = None, *, quick: bool = False, **fields: Any) -> Plan:
    """The plan `kwsbench run` would evaluate: the YAML `config` (if any), `fields` on top (None = not given), the
    embedded defaults (no data_dir and no models: the synthetic set with the project's weights) and `quick`
    (fills in what was not given, never replaces it)."""
    return plan_and_left_out(config, quick=quick, **fields)[0]


def plan_and_left_out(config: str | Path | None = None, *, quick: bool = False,
                      **fields: Any) -> tuple[Plan, list[LeftOut]]:
    """`plan(...)` and the models it leaves out, each with why (default models: weights that did not learn; on a
    CPU or with `quick`, the models too slow for it; any model without weights here that no name asked for, only
    the default selection, 'all' or a glob). SNRs given without a noise source are refused."""
    from kwsbench.run.plan import (
        QUICK_DEFAULTS,
        check_inputs,
        check_noise_and_snr,
        embedded_defaults,
        given_keys,
        models_with_weights,
        resolve_plan,
        swept_models_with_weights,
    )

    resolved = resolve_plan(config, fields, defaults=QUICK_DEFAULTS if quick else None)
    check_noise_and_snr(resolved, given_keys(config, fields))
    check_inputs(resolved)
    resolved, left = embedded_defaults(resolved, quick=quick)
    resolved, without_weights = models_with_weights(resolved)
    resolved, swept = swept_models_with_weights(resolved)
    return resolved, left + without_weights + swept


def run(plan_or_config: Plan | str | Path | None = None, *, quick: bool = False, show_progress: bool = False,
        shard: Any = None, **fields: Any) -> RunSummary:
    """Evaluate a grid into its store (= `kwsbench run`); e.g. `run(quick=True)` or `run(models=['nc-ssm'],
    noise=['babble'], snr=[-5.0, 0.0], data_dir='~/gsc')`. Returns the run's summary (cells computed, reused,
    failed, `cell_keys`); read the numbers with `results()`."""
    from concurrent.futures import ThreadPoolExecutor

    from kwsbench.run.plan import Plan

    if isinstance(plan_or_config, Plan):
        resolved = plan_or_config.validate()
    else:
        resolved = plan(plan_or_config, quick=quick, **fields)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The embedded set, when it must be made, is spoken by espeak-ng in a child process: started before
        # torch is imported, it runs on another core while the import takes this one (~1 s of a cold main job).
        data = pool.submit(_default_data) if resolved.data_dir is None else None
        from kwsbench.run.runner import run_plan

        if data is not None:
            data.result()  # its error, if any, is raised here as it would be in the run
    return run_plan(resolved, shard=shard, show_progress=show_progress)


def _default_data() -> None:
    from kwsbench.data.synth import ensure_default_dataset

    ensure_default_dataset(seed=0)


def reproduce(*, show_progress: bool = False, **fields: Any) -> ReproduceReport:
    """Run the published checkpoints and judge them against the papers' rows (= `kwsbench reproduce`); `fields`
    are ReproduceOptions' (models, data_dir, quick, full, snr, tol, store, ...). `.exit_code()` gives the CLI's."""
    from kwsbench.run.reproduce import ReproduceOptions, run_reproduce

    return run_reproduce(ReproduceOptions(**fields), show_progress=show_progress)


def load_model(name: str, weights: str | None = None, device: str = "cpu") -> LoadedModel:
    """A registry model with verified weights (`weights`: None for the card's own checkpoint, '<manifest>:<id>'
    such as 'synth:nc-ssm.pt', or a file path): `.module` (eval mode, on `device`), `.sha256` of the weights
    file, `.labels` the classes the checkpoint predicts."""
    from kwsbench.checkpoints import load_model as _load

    return _load(name, weights, device=device)


def cost(models: str | Iterable[str] = "all", rates: Iterable[int] = DEFAULT_RATES) -> list[Cost]:
    """Parameters and MACs (= `kwsbench cost`) of each model with a cost function (names, globs or 'all') at each
    rate; `models_without_cost` names the others."""
    from kwsbench.cost import model_cost
    from kwsbench.errors import BadInputError
    from kwsbench.models.registry import resolve
    from kwsbench.run.plan import rates_problem

    rates = [int(rate) for rate in rates]
    problem = rates_problem(rates)  # the rates a run takes: a cost at 0 Hz or 12345 Hz describes no run
    if problem:
        raise BadInputError(f"--rates {problem}, got {','.join(map(str, rates))}; e.g. 16000,8000,4000")
    return [model_cost(card, rate) for card in resolve(_names(models)) if card.cost is not None for rate in rates]


def models_without_cost(models: str | Iterable[str] = "all") -> list[str]:
    from kwsbench.models.registry import resolve

    return [card.name for card in resolve(_names(models)) if card.cost is None]


def _names(models: str | Iterable[str]) -> list[str]:
    return [models] if isinstance(models, str) else list(models)


def _rows(store: str | Path | None, models: str | Iterable[str] | None, per_seed: bool,
          selection: dict[str, Any]) -> tuple[list[TidyRow], int]:
    """Leaderboard rows of the store's successful cells: of the models matching `models` (names or shell globs),
    of the clip set `selection` picks (data, protocol, weights, run); and the number of cells they cover."""
    from kwsbench.results.clipsets import Selection, select
    from kwsbench.results.leaderboard import store_labels_of, store_rows, stored_models_matching
    from kwsbench.results.store import open_existing

    with open_existing(store) as st:  # a missing store: StoreMissingError (exit 8) naming the path
        cells = st.cells()
        if models:  # a name that picks no stored model is an error (exit 5), never an empty table
            keep = stored_models_matching(_names(models), {c.model for c in cells})
            cells = [c for c in cells if c.model in keep]
        cells = select(cells, store_labels_of(st, cells), Selection(**selection))
        return store_rows(st, cells, per_seed=per_seed), len(cells)


def results(store: str | Path | None = None, models: str | Iterable[str] | None = None, per_seed: bool = True,
            data: str | None = None, protocol: str | None = None, weights: str | None = None, run: int | None = None,
            **filters: Any) -> pandas.DataFrame:
    """The rows and columns of the CSV export (`kwsbench leaderboard --format csv --per-seed`): one row per stored
    cell (`per_seed=False`: cells differing only in the noise seed averaged), accuracies and intervals in percent
    (`*_pct`), macro_f1 a fraction, snr_db in dB, rate_hz in Hz, macs per one-second clip, data set, protocol,
    fingerprint and weights manifest on every row, rank groups per condition.
    `store`: default $KWSBENCH_STORE, else runs/kwsbench.sqlite (a missing one raises StoreMissingError, exit
    code 8); `models`: names or globs; `data`/`protocol`/`weights`/`run`: one clip set (as the CLI filters);
    `filters`: column=value, e.g. noise='factory', rate_hz=16000."""
    from dataclasses import asdict

    import pandas

    from kwsbench.results.leaderboard import TIDY_COLUMNS

    unknown = sorted(set(filters) - set(TIDY_COLUMNS))
    if unknown:
        from kwsbench.errors import BadInputError

        raise BadInputError(f"unknown result column(s) {', '.join(unknown)}; columns: {', '.join(TIDY_COLUMNS)}")
    rows, _ = _rows(store, models, per_seed, dict(data=data, protocol=protocol, weights=weights, run=run))
    out = [asdict(r) for r in rows]
    out = [r for r in out if all(r[k] == v for k, v in filters.items())]
    return pandas.DataFrame(out, columns=list(TIDY_COLUMNS))


def leaderboard(store: str | Path | None = None, fmt: str = "md", wide: bool = False,
                models: str | Iterable[str] | None = None, per_seed: bool = False, data: str | None = None,
                protocol: str | None = None, weights: str | None = None, run: int | None = None) -> tuple[str, int]:
    """The `kwsbench leaderboard` text (csv, md or json; seeds averaged, one row per cell with `per_seed`, or per
    model and clip set with `wide`) and the number of cells it covers. Rendered from the same rows as `results()`
    without pandas, so the command starts fast; tests/test_api.py checks both give the same numbers."""
    from dataclasses import asdict

    from kwsbench.results.leaderboard import render, wide_rows

    rows, count = _rows(store, models, per_seed, dict(data=data, protocol=protocol, weights=weights, run=run))
    return render(wide_rows(rows) if wide else [asdict(r) for r in rows], fmt), count
