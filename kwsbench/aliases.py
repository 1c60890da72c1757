"""`kwsbench.run(...)`, `kwsbench.results(...)` and `kwsbench.cost(...)` are API functions whose names are also
the modules kwsbench/run/, kwsbench/results/ and kwsbench/cost.py. Python binds the package attribute
`kwsbench.<name>` to the module once anything imports it, so each of those modules is made callable and
forwards the call to the API function of its name. The forward is looked up by name when called: it is an alias
for the user, not a dependency of the lower layer on the API (import-linter's contracts stay as they are).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _ApiAlias(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        function = getattr(importlib.import_module("kwsbench.api"), self.__name__.rsplit(".", 1)[1])
        return function(*args, **kwargs)


def callable_as_api(module_name: str) -> None:
    """Make the (already imported) module `kwsbench.<name>` callable as `kwsbench.api.<name>`."""
    sys.modules[module_name].__class__ = _ApiAlias
