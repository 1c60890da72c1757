"""kwsbench.cost: primitives against hand / brute-force counts, published figures as regression tests."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kwsbench import cost
from kwsbench.cli import main
from kwsbench.models.registry import get_card
from kwsbench.models.sedge import build_sedge

# ------------------------------------------------------------------------------------------------
# Primitives


def _flop_macs(module: nn.Module, x: torch.Tensor) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("cin,cout,k,n,stride,pad,dil,groups", [
    (3, 8, 5, 50, 1, 0, 1, 1), (8, 8, 3, 40, 2, 1, 1, 8), (4, 6, 3, 33, 1, 2, 2, 2), (6, 6, 9, 100, 3, 4, 1, 3),
])
def test_conv1d_matches_flop_counter(cin, cout, k, n, stride, pad, dil, groups):
    conv = nn.Conv1d(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups)
    expected = _flop_macs(conv, torch.zeros(1, cin, n))
    assert cost.conv_macs(cin, cout, k, n, stride, pad, dil, groups) == expected


def test_conv2d_matches_flop_counter():
    conv = nn.Conv2d(4, 8, (10, 4), stride=(2, 2), padding=(5, 1), groups=2)
    expected = _flop_macs(conv, torch.zeros(1, 4, 40, 101))
    assert cost.conv_macs(4, 8, (10, 4), (40, 101), (2, 2), (5, 1), 1, 2) == expected


def test_conv_brute_force_count():
    # Enumerate every output position and kernel tap of a strided, dilated, grouped 1-d conv.
    cin, cout, k, n, s, p, d, g = 4, 6, 3, 17, 2, 3, 2, 2
    count = 0
    for _o in range(cout):
        for pos in range(0, n + 2 * p - d * (k - 1), s):
            count += (cin // g) * k if pos + d * (k - 1) < n + 2 * p else 0
    assert cost.conv_macs(cin, cout, k, n, s, p, d, g) == count


def test_linear_and_elementwise():
    assert cost.linear_macs(7, 5, positions=3) == _flop_macs(nn.Linear(7, 5), torch.zeros(3, 7))
    assert cost.elementwise_macs(10, 3) == sum(3 for _ in range(10))


def test_fft_and_stft_counts():
    assert cost.fft_macs(8) == 2 * 8 * 3  # 4 butterflies per stage x 3 stages x 4 real MACs
    assert cost.fft_macs(5) == cost.fft_macs(8)  # rounded up to a power of two
    assert cost.fft_macs(8, real_input=True) == 8 * 3
    x = torch.zeros(16)
    frames = torch.stft(x, 8, hop_length=4, window=torch.hann_window(8), center=True, return_complex=True).shape[-1]
    assert cost.stft_frames(16, 8, 4) == frames
    per_frame = 8 + cost.fft_macs(8, real_input=True) + 2 * 5  # window, rfft, |X|^2 over 5 bins
    assert cost.stft_macs(16, 8, 4) == frames * per_frame


def test_mel_and_pcen():
    fb = torch.zeros(3, 5)
    fb[0, :2] = 1
    fb[2, 3] = 0.5
    assert cost.mel_macs(5, 3, 7) == 5 * 3 * 7
    assert cost.mel_macs(5, 3, 7, nonzero=int((fb != 0).sum())) == 3 * 7
    assert cost.pcen_macs(4, 10) == 5 * 4 * 10


class _Counter:
    """A real number that counts the multiplies made with it (one multiply = one MAC)."""

    muls = 0

    def __init__(self, v: float):
        self.v = v

    def __mul__(self, other):
        _Counter.muls += 1
        return _Counter(self.v * _val(other))

    __rmul__ = __mul__

    def __add__(self, other):
        return _Counter(self.v + _val(other))

    __radd__ = __add__

    def __sub__(self, other):
        return _Counter(self.v - _val(other))


def _val(x):
    return x.v if isinstance(x, _Counter) else x


def _cmul(a, b):  # complex multiply written out in real arithmetic
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def test_diag_ssm_brute_force():
    n, h_in, h_out, steps = 3, 2, 4, 5
    _Counter.muls = 0
    lam = [(_Counter(0.9), _Counter(0.1))] * n
    bm = [[(_Counter(0.2), _Counter(0.3))] * h_in for _ in range(n)]
    cm = [[(_Counter(0.5), _Counter(-0.1))] * n for _ in range(h_out)]
    x = [(0.0, 0.0)] * n
    for _t in range(steps):
        u = [1.0] * h_in
        x = [_add(_cmul(lam[i], x[i]), _sum2([(bm[i][j][0] * u[j], bm[i][j][1] * u[j]) for j in range(h_in)]))
             for i in range(n)]
        _y = [sum((cm[o][i][0] * x[i][0] - cm[o][i][1] * x[i][1] for i in range(n)), 0.0) for o in range(h_out)]
    assert cost.diag_ssm_macs(n, h_in, h_out, steps) == _Counter.muls


def _add(a, b):
    return a[0] + b[0], a[1] + b[1]


def _sum2(items):
    re, im = 0.0, 0.0
    for a, b in items:
        re, im = a + re, b + im
    return re, im


def test_selective_scan_and_fft_conv():
    e, n, t = 2, 3, 7
    assert cost.selective_scan_macs(e, n, t) == t * (4 * e * n + e + e)
    assert cost.selective_scan_macs(e, n, t, d_skip=False) == t * (4 * e * n + e)
    # FFT size 32 >= 10 + 10 - 1 is enough for an exact linear convolution: check by computing it.
    x, k = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    y = torch.fft.irfft(torch.fft.rfft(x, 32) * torch.fft.rfft(k, 32), 32)[:10]
    direct = torch.stack([sum(k[j] * x[i - j] for j in range(i + 1)) for i in range(10)])
    assert torch.allclose(y, direct)
    assert cost.fft_conv_macs(3, 10, 10) == 3 * (2 * cost.fft_macs(32, True) + 4 * 17)
    assert cost.fft_conv_macs(3, 10, 10, kernel_precomputed=False) == 3 * (3 * cost.fft_macs(32, True) + 4 * 17)


def test_small_cnn_body_agrees_with_flop_counter():
    net = nn.Sequential(
        nn.Conv2d(1, 16, (10, 4), stride=(2, 2), padding=(5, 1)), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.Conv2d(16, 24, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 12),
    )
    h, w = cost.conv_output_size(40, 10, 2, 5), cost.conv_output_size(101, 4, 2, 1)
    ours = (cost.conv_macs(1, 16, (10, 4), (40, 101), (2, 2), (5, 1)) + cost.conv_macs(16, 16, 3, (h, w), 1, 1, 1, 16)
            + cost.conv_macs(16, 24, 1, (h, w)) + cost.linear_macs(24, 12))
    ref = _flop_macs(net, torch.zeros(1, 1, 40, 101))
    assert abs(ours - ref) / ref < 0.01


# ------------------------------------------------------------------------------------------------
# S-Edge published figures (s-edge.md §5.2, §5.3)

REPO_TABLE = {  # params, MACs per input sample at 16 / 8 / 4 kHz
    "full": (141_381, 137_505.21, 68_753.21, 34_377.21),
    "large": (56_333, 53_593.14, 26_797.14, 13_399.14),
    "medium": (27_621, 25_145.14, 12_573.14, 6_287.14),
    "small": (20_377, 17_733.14, 8_867.14, 4_434.14),
    "tiny": (8_413, 5_993.14, 2_997.14, 1_499.14),
    "naive-extra-large": (94_821, 92_225.14, 46_113.14, 23_057.14),
    "naive-large": (78_053, 75_521.14, 37_761.14, 18_881.14),
    "naive-medium": (61_285, 58_817.14, 29_409.14, 14_705.14),
    "naive-small": (44_517, 42_113.14, 21_057.14, 10_529.14),
}


@pytest.mark.parametrize("size", sorted(REPO_TABLE))
def test_sedge_repo_formula_reproduces_published(size):
    card = get_card(f"s-edge-{size}")
    params, *macs = REPO_TABLE[size]
    for rate, expected in zip((16000, 8000, 4000), macs, strict=True):
        rec = cost.model_cost(card, rate)
        assert rec.published["repo_params"] == params
        assert rec.published["repo_macs_per_sample"] == pytest.approx(expected, abs=0.005)


CPP_TABLE = [  # model, chain, C++ MFLOP, streaming-formula MFLOP-equivalent (s-edge.md §5.3)
    ("full", [1, 1, 1, 1, 1, 1], 4406.95, 4400.13), ("full", [1, 1, 1, 2, 4, 12], 2309.48, 2305.71),
    ("full", [1, 1, 4, 8, 16, 32], 1198.31, 1196.39), ("full", [1, 2, 14, 14, 42, 42], 573.51, 572.59),
    ("large", [1, 1, 1, 1, 1, 1], 1721.41, 1714.95), ("large", [1, 1, 1, 2, 2, 38], 964.38, 961.66),
    ("large", [1, 2, 2, 8, 8, 48], 413.89, 412.80), ("large", [1, 3, 3, 6, 30, 60], 295.64, 294.83),
    ("small", [1, 1, 1, 1, 1, 1], 572.50, 567.43), ("small", [1, 1, 1, 1, 2, 22], 237.21, 235.18),
    ("small", [1, 1, 3, 6, 6, 42], 93.71, 93.05), ("small", [1, 1, 1, 1, 9, 63], 183.72, 182.16),
    ("small", [1, 2, 2, 6, 18, 54], 71.21, 70.66), ("small", [1, 2, 4, 16, 32, 64], 47.29, 46.98),
    ("small", [1, 4, 4, 16, 32, 64], 39.25, 38.98), ("small", [1, 4, 4, 16, 64, 64], 37.44, 37.19),
    ("tiny", [1, 1, 1], 193.61, 191.75), ("tiny", [1, 1, 5], 65.29, 64.77), ("tiny", [1, 2, 22], 26.98, 26.80),
    ("tiny", [1, 4, 28], 18.65, 18.54), ("tiny", [1, 2, 6], 46.42, 46.04), ("tiny", [1, 5, 20], 19.58, 19.46),
    ("tiny", [1, 9, 54], 12.13, 12.07), ("tiny", [1, 11, 55], 11.53, 11.48), ("tiny", [2, 8, 64], 8.97, 8.92),
    ("tiny", [3, 12, 48], 7.66, 7.60),
]


@pytest.mark.parametrize("size,chain,cpp,formula", CPP_TABLE)
def test_sedge_streaming_matches_cpp_table(size, chain, cpp, formula):
    layers = cost.sedge_layer_shapes(build_sedge(size))
    mflop = 2 * 16000 * cost.sedge_streaming_macs_per_sample(layers, chain) / 1e6
    assert mflop == pytest.approx(formula, abs=0.006)
    assert abs(mflop - cpp) / cpp < 0.01  # the rest is bias adds and activations


def test_sedge_tiny_chain_repo_vs_streaming():
    layers = cost.sedge_layer_shapes(build_sedge("tiny"))
    assert 2 * 16000 * cost.sedge_repo_macs_per_sample(layers, [1, 9, 54]) / 1e6 == pytest.approx(30.69, abs=0.005)
    card = get_card("s-edge-tiny")
    rec = cost.sedge_cost(card, 16000, chain=[1, 9, 54])
    assert rec.streaming_macs_per_s * 2 / 1e6 == pytest.approx(12.13, rel=0.01)
    assert rec.streaming_macs_per_s < rec.body_macs


@pytest.mark.parametrize("size", ["tiny", "small", "full"])
def test_sedge_8k_is_half_of_16k(size):
    card = get_card(f"s-edge-{size}")
    h_last = card.build().layers[-1].h_out
    decoder = cost.linear_macs(h_last, card.num_classes)  # applied once per clip at every rate
    c16, c8, c4 = (cost.model_cost(card, r) for r in (16000, 8000, 4000))
    assert c16.body_macs - decoder == 2 * (c8.body_macs - decoder) == 4 * (c4.body_macs - decoder)
    assert c16.trainable_params == c8.trainable_params
    assert c16.frontend_macs == 0


def test_sedge_cost_params_are_the_models_own():
    card = get_card("s-edge-tiny")
    model = card.build()
    rec = cost.model_cost(card, 16000)
    assert rec.trainable_params == sum(p.numel() for p in model.parameters())
    assert rec.state_size == sum(2 * ly.n_state for ly in model.layers) + model.layers[-1].h_out


# ------------------------------------------------------------------------------------------------
# NC-SSM


@pytest.mark.parametrize("d,n,total,front,body", [
    (20, 6, 3_424_752, 2_560_630, 864_122), (37, 10, 5_002_564, None, None),
])
def test_ncssm_published_method(d, n, total, front, body):
    pub = cost.ncssm_published_macs(cost.NcssmDims(d, n))
    assert pub["published_total_macs"] == total
    if front is not None:
        assert (pub["published_frontend_macs"], pub["published_body_macs"]) == (front, body)


def test_ncssm_cost_reports_both_and_reads_model_shapes():
    rec = cost.ncssm_cost({"d_model": 20, "d_state": 6}, 16000)
    assert rec.trainable_params == 7_443
    assert rec.published["published_total_macs"] == 3_424_752
    assert rec.total_macs != rec.published["published_total_macs"]  # different method, labelled apart
    assert "T=101" in rec.notes
    low = cost.ncssm_cost({"d_model": 20, "d_state": 6}, 8000)
    assert low.published == {} and low.frontend_macs < rec.frontend_macs and low.body_macs == rec.body_macs
    from kwsbench.models.ncssm import build_ncssm

    model = build_ncssm(d_model=37, d_state=10)
    assert cost.ncssm_dims(model) == cost.NcssmDims(37, 10)
    assert cost.ncssm_cost(model, 16000).trainable_params == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_json(capsys):
    assert main(["cost", "--models", "s-edge-tiny", "--rates", "16000,8000", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["rate"] for r in rows] == [16000, 8000]
    assert rows[0]["published"]["repo_macs_per_sample"] == pytest.approx(5993.14)
    assert math.isclose(rows[0]["total_macs"], rows[0]["body_macs"])


def test_cli_csv_and_bad_rates(capsys):
    assert main(["cost", "--models", "s-edge-tiny", "--rates", "4000", "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("model,rate,") and out[1].startswith("s-edge-tiny,4000,")
    assert main(["cost", "--models", "s-edge-tiny", "--rates", "8k"]) == 5
    assert main(["cost", "--models", "s-edge-tiny", "--rates", "7000"]) == 5
