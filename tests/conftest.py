"""Shared test fixtures. Data from ../shared is found through one setting, KWSBENCH_SHARED."""

from __future__ import annotations

import pytest
from helpers import TINY_CARDS, require_shared

from kwsbench.models.registry import registered


@pytest.fixture(scope="session")
def shared():
    return require_shared()


@pytest.fixture(scope="session")
def gsc_dev_dir():
    return require_shared("data", "gsc_v2_test_dev")


@pytest.fixture(scope="session")
def noise_dir():
    return require_shared("data", "gsc_background_noise")


@pytest.fixture(scope="session")
def ncssm_checkpoints():
    return require_shared("checkpoints", "nc-ssm")


@pytest.fixture(scope="session")
def ncssm_fixtures():
    return require_shared("fixtures", "ncssm")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache, so tests never read a user's cached clip sets."""
    cache = tmp_path_factory.getbasetemp() / "kwsbench-cache"
    monkeypatch.setenv("KWSBENCH_CACHE", str(cache))


@pytest.fixture
def tiny_cards():
    """The runner's stand-in cards (tests/helpers.py), registered for this test only."""
    with registered(*TINY_CARDS) as cards:
        yield cards
