"""Model cards and the registry.

Every family module in `kwsbench.models` calls `register(ModelCard(...))` at import time; the
registry imports all of them on first use (no list to maintain, no if-chains over names).
A model's forward takes raw audio (B, samples) float32 at its `native_rate` and returns
logits (B, classes); its front end is part of the model.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kwsbench.errors import BadInputError
from kwsbench.models.seeded import drawing_from

# modules of kwsbench.models that register no card: sedge_eval and ncssm_gpu (S-Edge's and NC-SSM's GPU inference
# paths) load Triton, which only a forward on a GPU needs (their families import them there); seeded is the
# builds' generator
_NOT_FAMILIES = {"registry", "__init__", "sedge_eval", "ncssm_gpu", "seeded"}


# Families whose inference on a GPU runs Triton kernels (ncssm_gpu: NC-SSM and NanoMamba; sedge_eval: S-Edge). A
# GPU run starts Triton's runtime before its first model only when one of them is in the plan (kwsbench.run.warmup):
# the start costs about half a second that other plans would wait for. tests/test_cards.py checks the list.
TRITON_FAMILIES = frozenset({"nc-ssm", "nanomamba", "s-edge"})


@dataclass(frozen=True)
class ModelCard:
    name: str  # lower-case, dashes: "nc-ssm-20k"
    family: str  # "nc-ssm", "nanomamba", "bc-resnet", "ds-cnn", "s-edge", "s4", ...
    builder: Callable[..., Any]  # returns an nn.Module
    kwargs: dict = field(default_factory=dict)
    input: str = "raw"  # "raw" audio, or the name of the model's internal front end, e.g. "log-mel-40"
    native_rate: int = 16000
    protocol: str = "v2-12"  # label protocol: "v2-12", "v2-35", "v2-10"
    num_classes: int = 12
    can_change_rate: bool = False  # SSM step scale / front end at a new rate
    can_stream: bool = False  # has step-by-step state update
    # a CPU run with more threads than models evaluates this model's clips in lanes, one thread each
    # (kwsbench.run.lanes), instead of one forward on all threads: True where that measured faster
    cpu_lanes: bool = False
    cost: Callable[..., Any] | None = None  # (card, rate) -> cost record (kwsbench.cost)
    checkpoint: str | None = None  # default checkpoint id in a manifest under checkpoints/
    aliases: tuple[str, ...] = ()
    # the parameter count the paper or repository states (as printed, rounding included); None where no source
    # gives one. What the port builds is `counted_params()`.
    published_params: int | None = None
    recipe: str | None = None  # packaged training recipe (kwsbench/train/recipes/<name>.yaml); None: none fits
    description: str = ""
    source: str = ""  # paper / repository the definition follows

    def build(self, num_classes: int | None = None, *, init_seed: int = 0, **overrides: Any):
        """The model; `num_classes` other than the card's gives the same architecture with another head
        (e.g. a 35-class SSM card trained on the 12-class protocol), where the builder offers it.

        Random initial weights that the builder draws without a generator of its own (torch's standard layers)
        come from a generator seeded with `init_seed`, never from torch's global one (kwsbench.models.seeded):
        the same arguments give the same weights on any thread, and the caller's global RNG is left alone."""
        if num_classes is not None and num_classes != self.num_classes:
            if not self.head_is_sizable:
                raise BadInputError(
                    f"model {self.name} has a fixed {self.num_classes}-class head; it cannot be built for "
                    f"{num_classes} classes. Use data of its label protocol ({self.protocol}).")
            overrides["num_classes"] = num_classes
        with drawing_from(init_seed):
            return self.builder(**{**self.kwargs, **overrides})

    def counted_params(self) -> int:
        """Trainable parameters of the model as this card builds it (counted, not quoted)."""
        return sum(p.numel() for p in self.build().parameters() if p.requires_grad)

    @property
    def runs_triton_on_gpu(self) -> bool:
        return self.family in TRITON_FAMILIES

    @property
    def head_is_sizable(self) -> bool:
        """Whether the builder takes `num_classes` (the cards' own kwargs say so, or its signature)."""
        import inspect

        return "num_classes" in self.kwargs or "num_classes" in inspect.signature(self.builder).parameters


_CARDS: dict[str, ModelCard] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


def register(card: ModelCard) -> ModelCard:
    for key in (card.name, *card.aliases):
        if key in _ALIASES and _ALIASES[key] != card.name:
            raise ValueError(f"model name {key!r} registered twice ({_ALIASES[key]} and {card.name})")
    _CARDS[card.name] = card
    for key in (card.name, *card.aliases):
        _ALIASES[key] = card.name
    return card


@contextmanager
def registered(*cards: ModelCard) -> Iterator[tuple[ModelCard, ...]]:
    """Register `cards` for the duration of a `with` block (tests, notebooks), then remove them again; a name
    already registered is refused as by `register`."""
    _load_families()  # a family imported inside the block must not be mistaken for one of these cards
    done: list[ModelCard] = []
    try:
        for card in cards:
            done.append(register(card))
        yield cards
    finally:
        for card in done:
            _CARDS.pop(card.name, None)
            for key in (card.name, *card.aliases):
                _ALIASES.pop(key, None)


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    import kwsbench.models as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name not in _NOT_FAMILIES and not mod.name.startswith("_"):
            importlib.import_module(f"kwsbench.models.{mod.name}")
    _loaded = True


def all_cards() -> list[ModelCard]:
    _load_families()
    return [_CARDS[k] for k in sorted(_CARDS)]


def find_card(name: str) -> ModelCard | None:
    """The card of a name or alias, None when there is none (`get_card` says so as an error instead)."""
    _load_families()
    key = _ALIASES.get(name.strip().lower())
    return _CARDS[key] if key is not None else None


def get_card(name: str) -> ModelCard:
    _load_families()
    key = name.strip().lower()
    if key not in _ALIASES:
        known = ", ".join(sorted(_CARDS))
        raise BadInputError(f"unknown model {name!r}. Known models: {known}. See `kwsbench models list`.")
    return _CARDS[_ALIASES[key]]


def _items(names: str | list[str]) -> list[str]:
    """The non-empty items of a comma list or a list of names, stripped."""
    raw = names.split(",") if isinstance(names, str) else list(names)
    return [i.strip() for i in raw if i.strip()]


def _is_glob(item: str) -> bool:
    return any(ch in item for ch in "*?[")


def _is_pattern(item: str) -> bool:
    return item == "all" or _is_glob(item)


def has_pattern(names: str | list[str]) -> bool:
    """Whether `names` holds 'all' or a glob."""
    return any(_is_pattern(i) for i in _items(names))


def named_directly(names: str | list[str]) -> set[str]:
    """The card names among `names` given by name or alias, not through 'all' or a glob: a model asked for
    by name must run (missing weights fail its cells), one a pattern swept in may be skipped."""
    return {get_card(i).name for i in _items(names) if not _is_pattern(i)}


def resolve(names: str | list[str]) -> list[ModelCard]:
    """'all', a comma list, or shell globs (fnmatch) over names and aliases -> cards, de-duplicated."""
    import fnmatch

    _load_families()
    out: dict[str, ModelCard] = {}
    for item in _items(names):
        if item == "all":
            out.update((c.name, c) for c in all_cards())
        elif _is_glob(item):
            hits = sorted({_ALIASES[a] for a in _ALIASES if fnmatch.fnmatch(a, item.lower())})
            if not hits:
                raise BadInputError(f"model pattern {item!r} matches no model. See `kwsbench models list`.")
            out.update((h, _CARDS[h]) for h in hits)
        else:
            card = get_card(item)
            out[card.name] = card
    return list(out.values())
