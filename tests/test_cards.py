"""What a model card states: its training recipe and the published parameter count apart from the counted one."""

from __future__ import annotations

import pytest

from kwsbench.cli import main
from kwsbench.errors import EXIT_BAD_INPUT
from kwsbench.models.registry import ModelCard, all_cards, get_card, registered
from kwsbench.train.recipes import list_recipes, load_recipe

CARDS = all_cards()


@pytest.mark.parametrize("card", [c for c in CARDS if c.recipe], ids=lambda c: c.name)
def test_a_card_recipe_is_a_packaged_recipe_that_loads(card):
    assert card.recipe in list_recipes()
    assert load_recipe(card.recipe).name == card.recipe


def test_published_params_are_stated_apart_from_the_counted_ones():
    stated = {c.name: c.published_params for c in CARDS if c.published_params is not None}
    assert all(isinstance(v, int) and v > 0 for v in stated.values())
    # the ports whose count differs from the source's print: rounding (BC-ResNet, KWT) or what the source counts
    # (S-Edge's formula leaves out log_step and batch norm; NanoMamba's draft counts 2 more)
    differ = {n for n, v in stated.items() if v != next(c for c in CARDS if c.name == n).counted_params()}
    assert {"bc-resnet-1", "kwt-2", "s-edge-full", "nanomamba-tiny"} <= differ
    assert {"nc-ssm", "ds-cnn-s", "bc-resnet-1-ncssm", "kwt-1"}.isdisjoint(differ)


def test_every_project_card_names_its_recipe():
    assert [c.name for c in CARDS if c.recipe is None] == []


def test_training_a_card_without_a_recipe_on_real_data_asks_for_one(tmp_path, capsys):
    card = ModelCard(name="test-no-recipe", family="test", builder=get_card("nc-ssm").builder,
                     kwargs=get_card("nc-ssm").kwargs)
    with registered(card):
        rc = main(["train", card.name, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    assert rc == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "model test-no-recipe has no packaged training recipe" in err and "--recipe" in err
    assert not (tmp_path / "out").exists()
    assert "test-no-recipe" not in {c.name for c in all_cards()}  # gone again after the block


_TRITON_PATHS = ("kwsbench.models import ncssm_gpu", "kwsbench.models import sedge_eval",
                 "kwsbench.models.ncssm import", "kwsbench.models import ncssm\n")


def _runs_triton_kernels(card: ModelCard) -> bool:
    """Whether the card's own module reaches the GPU's Triton paths (ncssm_gpu directly or through ncssm's scans,
    sedge_eval): read from its source, since on a CPU those paths are never taken."""
    import inspect
    import sys

    source = inspect.getsource(sys.modules[card.builder.__module__])
    return any(path in source for path in _TRITON_PATHS) or card.builder.__module__ == "kwsbench.models.ncssm"


def test_the_cards_that_run_triton_on_a_gpu_are_those_whose_code_reaches_it():
    """A GPU run starts Triton only for plans with such a card (kwsbench.run.warmup): a card missing from the list
    would pay Triton's start in its first cell, one wrongly in it would make other plans wait for it."""
    wrong = {c.name: c.runs_triton_on_gpu for c in CARDS if c.runs_triton_on_gpu != _runs_triton_kernels(c)}
    assert not wrong
    assert {c.family for c in CARDS if c.runs_triton_on_gpu} == {"nc-ssm", "nanomamba", "s-edge"}
