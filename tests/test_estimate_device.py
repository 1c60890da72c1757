"""The run's time estimate uses rates of the run's kind of device when the store has no history."""

from __future__ import annotations

import pytest

from kwsbench.cost import model_cost
from kwsbench.models.registry import get_card
from kwsbench.results.store import Store
from kwsbench.run import estimate as est_mod


@pytest.mark.parametrize("device, rate, overhead", [
    ("cuda", est_mod.GPU_MAC_RATE, est_mod.GPU_CELL_OVERHEAD_S),
    ("cuda:1", est_mod.GPU_MAC_RATE, est_mod.GPU_CELL_OVERHEAD_S),
    ("cpu", est_mod.DEFAULT_MAC_RATE, est_mod.CELL_OVERHEAD_S),
])
def test_estimate_without_history_uses_the_device_kinds_rates(tmp_path, device, rate, overhead):
    card = get_card("ds-cnn-s")
    macs = int(model_cost(card, card.native_rate).total_macs)
    with Store(tmp_path / "s.sqlite") as store:
        est = est_mod.estimate([card], lambda c: [None] * 36, 1245, store, device)
    assert est.from_macs == ["ds-cnn-s"] and not est.mac_rate_measured
    assert est.seconds == pytest.approx(36 * (1245 * macs / rate + overhead))


def test_gpu_estimate_of_the_measured_public_grid_is_within_a_factor_two():
    # 12 public models x 36 conditions x 1,245 clips took 9.6 s of grid time on one H200 (README)
    names = ["bc-resnet-1-ncssm", "ds-cnn-s", "kwt-1", "nanomamba-small", "nanomamba-tiny", "nanomamba-tiny-final",
             "nc-ssm", "nc-ssm-12k", "nc-ssm-15k", "nc-ssm-20k", "nc-ssm-large", "nc-ssm-matched"]
    macs = sum(int(model_cost(c, c.native_rate).total_macs) for c in map(get_card, names))
    seconds = 36 * (1245 * macs / est_mod.GPU_MAC_RATE) + 432 * est_mod.GPU_CELL_OVERHEAD_S
    assert 9.6 / 2 < seconds < 9.6 * 2
