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

torch keeps its dispatch-mode stack per thread, so builds on several threads at once (the CPU model workers of
kwsbench.run.workers) each draw from their own generator and need no lock. Modes nest: the innermost open
`drawing_from` feeds the draws (an SSM builder seeds its own standard layers inside a card build).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def _with_generator_slot(func: torch._ops.OpOverload) -> torch._ops.OpOverload:
    """`func`, or its twin overload that also takes a generator (torch.randn(3) dispatches to aten.randn.default,
    whose schema has none; aten.randn.generator is the same draw from a given generator)."""
    names = [arg.name for arg in func._schema.arguments]
    if "generator" in names:
        return func
    packet = func.overloadpacket
    for overload in packet.overloads():
        twin = getattr(packet, overload)
        twin_names = [arg.name for arg in twin._schema.arguments]
        if "generator" in twin_names and [n for n in twin_names if n != "generator"] == names:
            return twin
    raise RuntimeError(
        f"a model build ran {func}, which draws from torch's global generator and takes no generator of its own "
        "(dropout, attention or RNN kernels); a builder must not run it: build the modules, and run forward "
        "passes after the build")


class _DrawFrom(TorchDispatchMode):
    """Gives every random operation dispatched on this thread that names no generator this one."""

    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.gen = gen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.Tag.nondeterministic_seeded in func.tags and kwargs.get("generator") is None:
            func, kwargs = _with_generator_slot(func), {**kwargs, "generator": self.gen}
        return func(*args, **kwargs)


@contextmanager
def drawing_from(seed: int) -> Iterator[torch.Generator]:
    """Within the block, random draws on this thread that name no generator come from a CPU generator seeded with
    `seed` (yielded). Build models on the CPU inside it (a CUDA draw would refuse the CPU generator)."""
    gen = torch.Generator().manual_seed(int(seed))
    with _DrawFrom(gen):
        yield gen
