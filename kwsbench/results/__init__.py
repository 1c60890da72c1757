"""Results: the store (typed records), statistics, the leaderboard, baselines and verdicts (pure functions)."""

from kwsbench.aliases import callable_as_api

callable_as_api(__name__)  # kwsbench.results(...) = kwsbench.api.results(...) (see kwsbench.aliases)
