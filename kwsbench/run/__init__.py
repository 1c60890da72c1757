"""Running a plan: the plan, the runner (one RunContext), CUDA graphs, sharding, progress, provenance."""

from kwsbench.aliases import callable_as_api

callable_as_api(__name__)  # kwsbench.run(...) = kwsbench.api.run(...) (see kwsbench.aliases)
