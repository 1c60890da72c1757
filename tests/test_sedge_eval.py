"""S-Edge's GPU eval path (a Triton scan per layer, narrow projections and read-outs fused) against the chunked path.

On CPU the Triton kernel runs under Triton's interpreter (TRITON_INTERPRET=1, read when the kernel module is
imported, hence a subprocess); on a CUDA device it runs compiled and the model takes it by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from kwsbench.models import sedge_eval
from kwsbench.models.sedge import build_sedge

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_triton = pytest.mark.skipif(sedge_eval.triton is None, reason="needs Triton (ships with torch's CUDA wheels)")

# Small sizes covering every branch: one-channel first layer (projection inside the kernel), identity residual,
# decimation, state sizes that are no power of two (masked blocks), BatchNorm with running statistics folded
# into the projection, trainable skip, several scan tiles with a partial last one, the fused read-out with each
# residual (broadcast from one channel, full width, trainable skip, none), pooling; each against the path with
# GEMM projections, and with GEMM read-outs too.
_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from kwsbench.models import sedge_eval
    from kwsbench.models.sedge import SEdgeClassifier, SEdgeConfig
    sedge_eval._SCAN_T = 16  # small tiles: the interpreter is slow
    configs = {  # layers of 12, 24 and 48 states project their input inside the scan kernel, the others do not
        "identity": (SEdgeConfig((6, 12, 4), (5, 5, 5), False, False, "s5", 0.1, None), [1, 2, 2], 16),
        "norm-skip": (SEdgeConfig((10, 6), (4, 7), True, True, "orthogonal", 0.0, None), [1, 1], 16),
        "norm-skip-projected": (SEdgeConfig((20, 24), (6, 5), True, True, "orthogonal", 0.0, None), [1, 1], 16),
        "no-residual": (SEdgeConfig((6, 12, 4), (5, 7, 5), False, False, "s5", 0.1, None), [1, 1, 1], 16),
        # with _K_STEP 16 (the others with 0: one chunk): a 40-wide input projected (and skipped) in chunks of 16;
        # 48 states in a block of 32 and a masked one
        "k-chunks": (SEdgeConfig((12, 48, 8), (40, 24, 6), True, True, "orthogonal", 0.0, None), [1, 1, 1], 32),
    }
    g = torch.Generator().manual_seed(3)
    out = {}
    for name, (cfg, chain, cb) in configs.items():
        sedge_eval._SCAN_CB = cb
        sedge_eval._K_STEP = 16 if name == "k-chunks" else 0
        m = SEdgeClassifier(cfg, num_classes=4, seed=1)
        m.set_step_scale(chain)
        for layer in m.layers:
            if layer.norm is not None:
                layer.norm.running_mean.copy_(torch.randn(layer.h_in, generator=g) * 0.3)
                layer.norm.running_var.copy_(torch.rand(layer.h_in, generator=g) * 1.5 + 0.5)
        m.standardise_input(0.01, 0.1)
        m.eval()
        x = torch.randn(3, 150, generator=g) * 0.1
        with torch.no_grad():
            ref = m(x)  # CPU: the chunked path
            new = sedge_eval.forward(m, x)
            kept = sedge_eval._PROJECT_MAX_IN, sedge_eval._READOUT_MAX_OUT
            sedge_eval._PROJECT_MAX_IN = 0  # every projection a GEMM
            gemm = sedge_eval.forward(m, x)
            sedge_eval._READOUT_MAX_OUT = 0  # ... and every read-out a GEMM, LeakyReLU and residual after it
            unfused = sedge_eval.forward(m, x)
            sedge_eval._PROJECT_MAX_IN, sedge_eval._READOUT_MAX_OUT = kept
            exact = m.double()(x.double())
            m.float()
            with torch.autocast("cpu", dtype=torch.bfloat16):  # --precision bf16: fp32 layers, bf16 decoder
                ref_bf = m(x)
                new_bf = sedge_eval.forward(m, x)
        scale = exact.abs().max().item()
        out[name] = {"new": (new.double() - exact).abs().max().item() / scale,
                     "ref": (ref.double() - exact).abs().max().item() / scale,
                     "new_ref": (new - ref).abs().max().item() / ref.abs().max().item(),
                     "gemm_ref": (gemm - ref).abs().max().item() / ref.abs().max().item(),
                     "unfused_ref": (unfused - ref).abs().max().item() / ref.abs().max().item(),
                     "readout": [sedge_eval.fuses_readout(layer.h_in, layer.h_out) for layer in m.layers],
                     "projected": [sedge_eval.projects_inside(layer.h_in, layer.n_state) for layer in m.layers],
                     "k": [sedge_eval._k_padding(layer.h_in) for layer in m.layers],
                     "bf16": [str(new_bf.dtype), str(ref_bf.dtype),
                              (new_bf.float() - ref_bf.float()).abs().max().item() / ref.abs().max().item()]}
    print(json.dumps(out))
""")


@needs_triton
def test_scan_path_equals_chunked_path_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    errors = json.loads(res.stdout.strip().splitlines()[-1])
    assert errors["identity"]["projected"] == [False, True, False]
    assert errors["norm-skip"]["projected"] == [False, False]
    assert errors["norm-skip-projected"]["projected"] == [False, True]
    assert errors["no-residual"]["projected"] == [False, True, False]
    assert errors["k-chunks"]["projected"] == [False, True, False] and errors["k-chunks"]["k"][1] == [48, 16]
    # every layer's read-out is narrow enough for the fused kernel (the pooling last layer keeps its own path):
    # broadcast residual (first layers), identity, trainable skip (norm-skip*) and none (no-residual's second)
    assert all(all(e["readout"]) for e in errors.values())
    for name, e in errors.items():
        assert e["new_ref"] < 1e-5, (name, e)
        assert e["gemm_ref"] < 1e-5, (name, e)
        assert e["unfused_ref"] < 1e-5, (name, e)
        assert e["new"] < 1e-5, (name, e)  # as close to the float64 result as the chunked path is
        assert e["ref"] < 1e-5, (name, e)
        # under bf16 autocast both paths give the same dtype and agree to the bf16 decoder's rounding
        assert e["bf16"][0] == e["bf16"][1] and e["bf16"][2] < 1e-2, (name, e)


@needs_triton
def test_dot_products_over_33_to_48_inputs_go_in_chunks_of_16_other_widths_in_one_chunk(monkeypatch):
    widths = (1, 8, 24, 32, 33, 40, 48, 49, 56, 64)
    # the default: chunks of 16 where they save a quarter of the products, else one power-of-two chunk (>= 16)
    assert [sedge_eval._k_padding(h) for h in widths] == [
        (16, 16), (16, 16), (32, 32), (32, 32), (48, 16), (48, 16), (48, 16), (64, 64), (64, 64), (64, 64)]
    monkeypatch.setattr(sedge_eval, "_K_STEP", 0)  # the previous default: one chunk for every width
    assert [sedge_eval._k_padding(h)[0] for h in widths] == [16, 16, 32, 32, 64, 64, 64, 64, 64, 64]
    assert all(kp == kc for kp, kc in map(sedge_eval._k_padding, widths))


def test_a_sweep_may_change_the_tunable_settings_only():
    assert sedge_eval.parse_setting("_K_STEP=0") == ("_K_STEP", 0)
    assert sedge_eval.parse_setting("_READOUT_K=64") == ("_READOUT_K", 64)
    # a kind, a function, an unknown name, or no whole number: not a setting
    for text in ("_SKIP=1", "_layer=1", "_NO_SUCH=1", "_K_STEP=x", "_K_STEP"):
        assert sedge_eval.parse_setting(text) is None, text


def test_applies_only_to_cuda_inference():
    m = build_sedge("tiny").eval()
    x = torch.zeros(2, 100)
    with torch.no_grad():
        assert not sedge_eval.applies(m, x)  # CPU tensors keep the chunked path
    if torch.cuda.is_available() and sedge_eval.triton is not None:
        m, x = m.cuda(), x.cuda()
        assert not sedge_eval.applies(m, x)  # gradients wanted
        m.requires_grad_(False)
        assert sedge_eval.applies(m, x)  # a frozen model
        assert not sedge_eval.applies(m, x.clone().requires_grad_())  # ... whose input's gradient is wanted
        m.requires_grad_(True)
        with torch.no_grad():
            assert sedge_eval.applies(m, x)
            assert not sedge_eval.applies(m.train(), x)
            m.eval()
            with sedge_eval.scan_eval(False):
                assert not sedge_eval.applies(m, x)
            assert not sedge_eval.applies(m, x.double())


@cuda
@needs_triton
@pytest.mark.parametrize("size", ["full", "naive-small", "large", "small", "tiny"])
def test_cuda_scan_path_equals_chunked_path(size):
    m = build_sedge(size, seed=0).cuda().eval()
    g = torch.Generator().manual_seed(0)
    for layer in m.layers:
        if layer.norm is not None:
            layer.norm.running_mean.copy_(torch.randn(layer.h_in, generator=g) * 0.3)
            layer.norm.running_var.copy_(torch.rand(layer.h_in, generator=g) * 1.5 + 0.5)
    x = (torch.randn(16, 16000, generator=g) * 0.1).cuda()
    with torch.no_grad():
        new = m(x)
        with sedge_eval.scan_eval(False):
            ref = m(x)
        exact = m.double()(x.double())
    scale = exact.abs().max()
    err_new = ((new.double() - exact).abs().max() / scale).item()
    err_ref = ((ref.double() - exact).abs().max() / scale).item()
    assert err_new < max(2 * err_ref, 1e-5), (err_new, err_ref)
    assert ((new - ref).abs().max() / ref.abs().max()).item() < 1e-5
    assert torch.equal(new.argmax(1), ref.argmax(1))



def test_runs_record_the_triton_version_that_computes_s_edge_on_a_gpu():
    from importlib import metadata

    from kwsbench.provenance import package_versions

    try:
        expected = metadata.version("triton")
    except metadata.PackageNotFoundError:  # a CPU-only install: no Triton, the chunked path
        expected = ""
    assert package_versions()["triton"] == expected


def test_model_commands_on_a_cpu_do_not_load_triton():
    # every model command imports the registry (all families); only a forward on a GPU needs the Triton path
    import subprocess
    import sys

    code = ("import sys, torch; from kwsbench.models.registry import all_cards, get_card; all_cards(); "
            "m = get_card('s-edge-tiny').build().eval(); m(torch.zeros(1, 1600)); "
            "print('triton' in sys.modules, 'kwsbench.models.sedge_eval' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
