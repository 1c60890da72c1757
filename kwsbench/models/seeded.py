"""Model builds whose random initial weights come from an explicit generator, never from torch's global one.

torch's standard layers (nn.Linear, nn.Conv1d/2d, ...) initialise themselves in their constructors from the
process's global generator, and so does any nn.init call or factory draw that names no generator. While
`drawing_from(seed)` is open, every such draw made on this thread takes a CPU generator seeded with `seed`
instead; draws that name their own generator (the SSM layers', S-Edge's) keep it. The global generator's state
is neither read nor advanced, so a build is a function of its arguments and the seed alone.

Why route the draws instead of re-initialising each standard layer type by hand afterwards: the rules and their
order stay torch's own, so a build under `drawing_from(s)` has the same weights as one after
`torch.manual_seed(s)` (what earlier versions of the project built, and trained its shipped checkpoints from);
a family's own initialisation in its constructor (KWT's Glorot, V-JEPA's truncated normal) is covered as well,
not overwritten; and no value computed at construction is lost, as it would be by building on the meta device.

Why a torch-function mode (the Python-level calls) and not a dispatch mode (the ATen ops beneath them): entering
a dispatch mode imports torch._dynamo (and with it sympy and Triton), ~0.8 s at every command's first build.
Builders draw through Python calls (nn.init, torch.rand*, Tensor.uniform_ / normal_ ...), which this mode sees.

torch keeps its function-mode stack per thread, so builds on several threads at once (the CPU model workers of
kwsbench.run.workers) each draw from their own generator and need no lock. Modes nest: the innermost open
`drawing_from` feeds the draws (an SSM builder seeds its own standard layers inside a card build).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.nn import init
from torch.overrides import TorchFunctionMode

# Python-level random draws that take `generator=` (torch 2.11): given none, they get the build's generator. The
# nn.init functions are listed themselves: the mode sees them, not the Tensor.uniform_ / normal_ calls inside them.
_ROUTED = frozenset({
    init.uniform_, init.normal_, init.trunc_normal_, init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_,
    init.kaiming_normal_, init.orthogonal_, init.sparse_,
    torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal, torch.bernoulli, torch.multinomial,
    torch.poisson, torch.rand_like, torch.randn_like, torch.randint_like,
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.random_, torch.Tensor.exponential_,
    torch.Tensor.bernoulli_, torch.Tensor.bernoulli, torch.Tensor.cauchy_, torch.Tensor.log_normal_,
    torch.Tensor.geometric_, torch.Tensor.multinomial,
})
# Draws with no generator argument: a builder must not run them (they would read the global generator).
_REFUSED = frozenset({
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, F.rrelu,
    F.gumbel_softmax, torch.dropout, torch.rrelu,
})


class _DrawFrom(TorchFunctionMode):
    """Gives every random call made on this thread that names no generator this one."""

    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.gen = gen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _ROUTED and kwargs.get("generator") is None:
            kwargs = {**kwargs, "generator": self.gen}
        elif func in _REFUSED:
            raise RuntimeError(
                f"a model build ran {getattr(func, '__name__', func)}, which draws from torch's global generator and "
                "takes no generator of its own; a builder must not run it: build the modules, and run forward "
                "passes after the build")
        return func(*args, **kwargs)


@contextmanager
def drawing_from(seed: int) -> Iterator[torch.Generator]:
    """Within the block, random draws on this thread that name no generator come from a CPU generator seeded with
    `seed` (yielded). Build models on the CPU inside it (a CUDA draw would refuse the CPU generator)."""
    gen = torch.Generator().manual_seed(int(seed))
    with _DrawFrom(gen):
        yield gen
