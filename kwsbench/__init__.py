"""kwsbench: how accurate is a keyword-spotting model, at what cost, when the audio is noisy
and the sample rate drops.

The Python API (kwsbench.api) is re-exported here and imported on first use, so `import kwsbench`
stays fast: `kwsbench.results()`, `kwsbench.run()`, `kwsbench.reproduce()`, `kwsbench.load_model()`,
`kwsbench.cost()`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("results", "run", "reproduce", "load_model", "cost", "leaderboard", "plan", "models_without_cost")
_MODULE_ALIASES = ("run", "results", "cost")
# the errors the API raises, so a notebook can write `except kwsbench.StoreMissingError` (each has .exit_code)
_ERRORS = ("KwsbenchError", "BadInputError", "CheckpointError", "DatasetError", "DownloadError",
           "MissingDependencyError", "StoreError", "StoreMissingError")
__all__ = ["__version__", *_API, *_ERRORS]


def __getattr__(name: str) -> Any:
    if name in _MODULE_ALIASES:  # a callable module: kwsbench.run(...) = kwsbench.api.run(...) (kwsbench.aliases)
        import importlib

        return importlib.import_module(f"kwsbench.{name}")
    if name in _API:
        from kwsbench import api

        return getattr(api, name)
    if name in _ERRORS:
        from kwsbench import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'kwsbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, *_ERRORS])
