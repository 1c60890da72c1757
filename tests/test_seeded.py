"""Model builds draw their random initial weights from their own generator, never from torch's global one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from kwsbench.models.registry import all_cards, get_card
from kwsbench.models.seeded import drawing_from

CARDS = all_cards()


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# builders with a `seed` argument of their own (default 0), which decides every random weight they draw
SEEDS_ITSELF = {"s4", "s5", "liquid-s4", "mamba", "centaurus", "s-edge"}


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_every_card_builds_without_the_global_generator(card):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        state = torch.random.get_rng_state()
        first = _weights(card.build(init_seed=5))
        assert torch.equal(state, torch.random.get_rng_state()), "the build read or advanced the global generator"
        torch.manual_seed(456)  # another global state must not change the weights
        assert _same(first, _weights(card.build(init_seed=5)))
        other = _weights(card.build(init_seed=6))
    # the seed reaches the weights, except where the builder's own `seed` argument decides them all
    assert _same(first, other) == (card.family in SEEDS_ITSELF)


@pytest.mark.parametrize("name", ["bc-resnet-1", "ds-cnn-s-hello-edge", "kwt-1", "nc-ssm", "vjepa2-audio-kws"])
def test_build_has_the_weights_of_a_build_after_manual_seed(name):
    # what versions before the builds' own generator trained the shipped checkpoints from: same draws, same order
    card = get_card(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0x1417)
        reference = _weights(card.builder(**card.kwargs))  # the builder alone draws from the global generator
    assert _same(reference, _weights(card.build(init_seed=0x1417)))


def test_draws_without_a_generator_are_routed_or_refused():
    state = torch.random.get_rng_state()
    with drawing_from(3):
        routed = (torch.randn(4), torch.randint(0, 9, (4,)), torch.randperm(5), torch.rand_like(torch.ones(3)))
        with pytest.raises(RuntimeError, match="dropout.*takes no generator"):
            torch.nn.functional.dropout(torch.ones(8), 0.5, training=True)
    assert torch.equal(state, torch.random.get_rng_state())
    gen = torch.Generator().manual_seed(3)
    expected = (torch.randn(4, generator=gen), torch.randint(0, 9, (4,), generator=gen),
                torch.randperm(5, generator=gen), torch.rand(3, generator=gen))
    assert all(torch.equal(a, b) for a, b in zip(routed, expected, strict=True))


def test_seeded_builds_on_several_threads_at_once_are_the_same_weights():
    # CPU runs build models on worker threads at once (kwsbench.run.workers). A thread that keeps reseeding and
    # drawing from the global generator meanwhile would change any build that drew from it.
    names = ["mamba-kws", "s5-kws", "bc-resnet-1", "kwt-1"] * 3
    serial = {name: _weights(get_card(name).build()) for name in set(names)}
    stop, start = threading.Event(), threading.Barrier(4)

    def spoil() -> None:
        k = 0
        while not stop.is_set():
            torch.manual_seed(k)
            torch.rand(64)
            k += 1

    def build(name: str) -> list[torch.Tensor]:
        if names.index(name) < 4:  # the first four start together
            start.wait()
        return _weights(get_card(name).build())

    with torch.random.fork_rng(devices=[]):
        spoiler = threading.Thread(target=spoil)
        spoiler.start()
        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                built = list(pool.map(build, names))
        finally:
            stop.set()
            spoiler.join()
    for name, got in zip(names, built, strict=True):
        assert _same(serial[name], got), name
