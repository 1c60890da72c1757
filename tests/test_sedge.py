"""S-Edge: parameter counts, scan, streaming = offline, step scale, RZOH, overfit, determinism."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from kwsbench.errors import BadInputError
from kwsbench.models.registry import get_card
from kwsbench.models.sedge import CONFIGS, PUBLISHED_PARAMS, RZOH, build_sedge, scan_planes

# torch-instantiated trainable counts of the reference model (s-edge.md §3), which include the unused
# input BatchNorm (2 parameters) that this port does not create.
TORCH_PARAMS = {"full": 141_765, "large": 57_071, "medium": 27_951, "small": 20_789, "tiny": 8_551,
                "naive-extra-large": 95_205, "naive-large": 78_373, "naive-medium": 61_541, "naive-small": 44_709}


@pytest.mark.parametrize("size", sorted(CONFIGS))
def test_parameter_counts(size):
    model = build_sedge(size)
    assert sum(p.numel() for p in model.parameters()) == TORCH_PARAMS[size] - 2
    card = get_card(f"s-edge-{size}")
    assert card.published_params == PUBLISHED_PARAMS[size] and card.recipe == "s-edge"
    assert card.protocol == "v2-35" and card.num_classes == 35 and card.can_stream and card.can_change_rate


def test_published_param_counts_via_repo_formula():
    from kwsbench.cost import sedge_layer_shapes, sedge_repo_params

    expected = {"tiny": 8_413, "small": 20_377, "medium": 27_621, "large": 56_333, "full": 141_381}
    for size, n in expected.items():
        assert sedge_repo_params(sedge_layer_shapes(build_sedge(size))) == n


def _loop_scan(log_lam: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    lam, x, out = torch.exp(log_lam), torch.zeros_like(v[:, 0]), []
    for t in range(v.shape[1]):
        x = lam * x + v[:, t]
        out.append(x)
    return torch.stack(out, 1)


@pytest.mark.parametrize("length", [1, 7, 8, 9, 100, 517])
def test_scan_planes_equals_recurrence(length):
    g = torch.Generator().manual_seed(length)
    log_lam = torch.complex(-torch.rand(6, generator=g) * 0.2, torch.rand(6, generator=g) * 3)
    v = torch.complex(torch.randn(3, length, 6, generator=g), torch.randn(3, length, 6, generator=g))
    ref = _loop_scan(log_lam.to(torch.complex128), v.to(torch.complex128))
    planes = torch.view_as_real(v).permute(3, 2, 0, 1).contiguous()  # (2, N, B, L) real planes
    x = scan_planes(log_lam.real, log_lam.imag, planes)
    got = torch.complex(x[0], x[1]).permute(1, 2, 0)
    assert torch.allclose(got.to(torch.complex128), ref, atol=1e-4 * ref.abs().max().item())


def test_forward_shapes_and_stability_projection():
    model = build_sedge("tiny").eval()
    with torch.no_grad():
        model.layers[0].Lambda[:, 0] = 0.3  # unstable real part: the projection must flip it
        out = model(torch.zeros(2, 400))
    assert out.shape == (2, 35) and torch.isfinite(out).all()
    assert (model.layers[0].Lambda[:, 0] <= 0).all() and (model.layers[0].Lambda[:, 1] >= 0).all()


def _stream(model, audio: torch.Tensor) -> torch.Tensor:
    state = model.init_state(audio.shape[0])
    with torch.no_grad():
        for t in range(audio.shape[1]):
            logits, state = model.step(audio[:, t], state)
    return logits


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("chain", [[1, 1, 1], [1, 2, 6], [2, 8, 64], [3, 12, 48]])
def test_streaming_equals_offline_chains(chain):
    model = build_sedge("tiny", seed=3).eval()
    model.set_step_scale(chain)
    audio = torch.randn(2, 400, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        offline = model(audio)
    assert _rel(_stream(model, audio), offline) < 1e-4


def _real_clips(gsc_dev_dir, n: int) -> torch.Tensor:
    files = sorted(gsc_dev_dir.glob("*/*.*"))
    files = [f for f in files if f.suffix in (".wav", ".flac")][:: max(1, len(files) // n)][:n]
    clips = []
    for f in files:
        x, rate = sf.read(f, dtype="float32")
        assert rate == 16000
        clips.append(np.pad(x, (0, max(0, 16000 - len(x))))[:16000])
    return torch.from_numpy(np.stack(clips))


@pytest.mark.data
@pytest.mark.slow
def test_streaming_equals_offline_real_clips(gsc_dev_dir):
    audio = _real_clips(gsc_dev_dir, 3)
    for size in ("tiny", "naive-small"):
        model = build_sedge(size, seed=1).eval()
        with torch.no_grad():
            offline = model(audio)
        assert _rel(_stream(model, audio), offline) < 1e-4


@pytest.mark.data
@pytest.mark.slow
def test_streaming_equals_offline_real_clips_8k(gsc_dev_dir):
    audio = _real_clips(gsc_dev_dir, 2)[:, ::2]  # S-Edge's own protocol: plain decimation
    model = build_sedge("tiny", seed=2).eval()
    model.set_sample_rate(8000)
    with torch.no_grad():
        offline = model(audio)
    assert _rel(_stream(model, audio), offline) < 1e-4


@pytest.mark.data
def test_streaming_equals_offline_real_clip_segments(gsc_dev_dir):
    """Fast variant: 75 ms from the middle of real clips (speech), uniform and layer-wise chains."""
    audio = _real_clips(gsc_dev_dir, 2)[:, 6000:7200]
    assert audio.abs().max() > 1e-3
    model = build_sedge("tiny", seed=2).eval()
    for chain in ([1, 1, 1], [1, 4, 12]):
        model.set_step_scale(chain)
        with torch.no_grad():
            offline = model(audio)
        assert _rel(_stream(model, audio), offline) < 1e-4


def test_step_scale_one_is_identity():
    model = build_sedge("small", seed=5).eval()
    audio = torch.randn(2, 300, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(audio)
        model.set_step_scale([1] * 6)
        same = model(audio)
        model.set_sample_rate(16000)
        same2 = model(audio)
    assert torch.equal(ref, same) and torch.equal(ref, same2)


def test_native_rate_equals_internal_decimation():
    model = build_sedge("tiny", seed=4).eval()
    audio = torch.randn(2, 600, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model.set_step_scale([2, 2, 2])  # 16 kHz in, decimated inside layer 1 (the paper's 8 kHz test)
        inside = model(audio)
        model.set_sample_rate(8000)  # 8 kHz in
        native = model(audio[:, ::2])
    assert torch.allclose(inside, native, atol=1e-6)
    with pytest.raises(BadInputError):
        model.set_sample_rate(7000)
    with pytest.raises(BadInputError):
        model.set_step_scale([1, 3, 4])


def test_rzoh_hold_matches_step_scale():
    """A layer at step 1 on a k-held input ends each block in the state of the layer at step k."""
    k = 4
    layer_1 = build_sedge("tiny", seed=6).eval().layers[1]
    layer_k = build_sedge("tiny", seed=6).eval().layers[1]
    layer_k.step_scale = float(k)
    u = torch.randn(2, 64, 8, generator=torch.Generator().manual_seed(3))
    held = u[:, torch.arange(64) // k * k]
    with torch.no_grad():
        assert torch.allclose(layer_1(held)[:, k - 1::k], layer_k(u[:, ::k]), atol=1e-4)


def test_rzoh_module():
    hold = RZOH(1.0, seed=0)
    factors = [hold.hold_factor() for _ in range(4000)]
    assert all(f in (1, 2, 4, 8, 16, 32, 64, 128) for f in factors)
    assert abs(np.mean([f >= 2 for f in factors]) - 0.5) < 0.05  # P(hold) ≈ p/2
    x = torch.arange(16.0).reshape(1, 16, 1)
    hold.eval()
    assert torch.equal(hold(x), x)
    hold.train()
    while True:  # replay until a hold happens, then check the block structure
        state = hold.gen.get_state()
        if hold.hold_factor() >= 2:
            hold.gen.set_state(state)
            break
    y = hold(x)[0, :, 0]
    k = int((y == y[0]).sum())
    assert k >= 2 and torch.equal(y, (torch.arange(16) // k * k).float())
    assert sum(p.numel() for p in hold.parameters()) == 0


def test_determinism_and_no_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build_sedge("small", seed=7), build_sedge("small", seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    audio = torch.randn(3, 200, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(a.eval()(audio), b.eval()(audio))
        assert torch.allclose(a(audio)[1:], a(audio[1:]), atol=1e-6)  # no batch dependence in eval


def test_gradients_reach_every_parameter():
    model = build_sedge("tiny", seed=8)
    loss = model(torch.randn(2, 300, generator=torch.Generator().manual_seed(5))).square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_overfit_24_clips():
    model = build_sedge("tiny", seed=0)
    g = torch.Generator().manual_seed(0)
    audio, labels = torch.randn(24, 1000, generator=g) * 0.3, torch.arange(24) % 35
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    correct = False
    for step in range(1, 301):
        opt.zero_grad()
        F.cross_entropy(model(audio), labels).backward()
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                correct = bool((model.eval()(audio).argmax(1) == labels).all())
            model.train()
            if correct:
                break
    assert correct, "tiny S-Edge did not reach 100% on 24 clips within 300 steps"


@pytest.mark.slow
def test_benchmark_forward_backward_small():
    """Batch 32 of 1-s clips, forward + backward; target < 2 s on a 2-core CPU (figure reported)."""
    model = build_sedge("small", seed=0)
    audio = torch.randn(32, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    model(audio[:2, :1000]).sum().backward()  # warm-up
    start = time.perf_counter()
    model(audio).sum().backward()
    elapsed = time.perf_counter() - start
    print(f"s-edge-small fwd+bwd batch 32 x 16000: {elapsed:.2f} s ({torch.get_num_threads()} threads)")
    assert elapsed < 30  # loose guard on a shared machine; the 2 s figure is measured and reported


@pytest.mark.parametrize("trainable_skip,norm,h_in,pool", [(True, True, 3, False), (True, True, 3, True),
                                                          (False, False, 1, False), (False, False, 4, True)])
def test_layer_backward_gradcheck(monkeypatch, trainable_skip, norm, h_in, pool):
    """Hand-written backward of the chunked layer (padding, chunk scan, tiles, BN folding) vs finite differences."""
    import kwsbench.models.sedge as sedge

    monkeypatch.setattr(sedge, "_TILE_STEPS", 20)  # one clip per tile
    monkeypatch.setattr(sedge, "_chunk_len", lambda *shape: 4)  # 13 steps: 4 chunks, the last one padded
    gen = torch.Generator().manual_seed(11)
    layer = sedge.SEdgeLayer(h_in, 3, 4, trainable_skip, norm, "orthogonal", 0.0, gen).double()
    with torch.no_grad():
        layer.Lambda[:, 1] += 0.3  # already stable: the in-place projection (a no-op here) is switched off
    monkeypatch.setattr(layer, "project_stable", lambda: None)
    names, params = zip(*layer.named_parameters(), strict=True)
    u = torch.randn(3, 13, h_in, dtype=torch.float64, generator=gen, requires_grad=True)

    def f(u, *ps):
        with torch.nn.utils.stateless._reparametrize_module(layer, dict(zip(names, ps, strict=True))):
            return layer._run(u, pool=pool)

    assert torch.autograd.gradcheck(f, (u, *params), eps=1e-6, atol=1e-6)


def test_standardise_input_is_the_recipes_global_standardisation():
    """forward(audio) with (mean, std) set == forward((audio - mean) / (std + 1e-5)) with the identity default."""
    from kwsbench.train.loop import standardise_input

    model = build_sedge("naive-small", num_classes=12, seed=2).eval()
    audio = torch.randn(2, 300, generator=torch.Generator().manual_seed(1)) * 0.05 + 0.01
    with torch.no_grad():
        plain = model((audio - 0.01) / (0.05 + 1e-5))
        clips = type("Clips", (), {"audio": audio.numpy()})()
        stats = standardise_input(model, clips)  # what the trainer does before the first step
        assert stats["mean"] == pytest.approx(float(audio.double().mean()))
        assert stats["std"] == pytest.approx(float(audio.double().std(unbiased=False)), rel=1e-6)
        model.standardise_input(0.01, 0.05)
        assert torch.allclose(model(audio), plain, atol=1e-5)
    assert set(model.state_dict()) >= {"input_mean", "input_std"}  # travels with the weights
    with pytest.raises(BadInputError):
        model.standardise_input(0.0, 0.0)


def _word_crops(gsc_dev_dir, per_class: int, samples: int) -> tuple:
    """`per_class` real clips of each of the 12 classes, each cut to `samples` around its loudest 100 ms."""
    from kwsbench.data.speech_commands import load_clipset

    clips = load_clipset(gsc_dev_dir)
    idx = np.concatenate([np.flatnonzero(clips.labels == k)[:per_class] for k in range(len(clips.label_names))])
    crops = []
    for a in clips.audio[idx]:
        centre = int(np.argmax(np.convolve(a.astype(np.float64) ** 2, np.ones(1600), mode="same")))
        start = min(max(centre - samples // 2, 0), len(a) - samples)
        crops.append(a[start:start + samples])
    clipset = clips.subset(idx, protocol=clips.protocol)
    clipset.audio = np.stack(crops)
    return clipset, torch.from_numpy(clipset.audio), torch.from_numpy(clipset.labels.astype(np.int64))


def _fit_word_crops(gsc_dev_dir, size: str, per_class: int, samples: int, steps: int = 60) -> tuple[float, int, int]:
    """Train an S-Edge size on word crops as the trainer does (its standardisation, the s-edge-high-lr recipe's
    optimiser groups and orthogonality term, warm-up then cosine); (loss, correct, clips) on those crops after."""
    from kwsbench.train.loop import build_optimizer, lr_factor, orthogonality_penalty, standardise_input
    from kwsbench.train.recipes import load_recipe

    clipset, audio, labels = _word_crops(gsc_dev_dir, per_class=per_class, samples=samples)
    model = build_sedge(size, num_classes=12, rzoh=False, seed=0)
    standardise_input(model, clipset)
    recipe = load_recipe("s-edge-high-lr")
    opt = build_optimizer(model, recipe)
    decoder = dict(model.named_parameters())[recipe.orthogonality.param]
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * lr_factor(step, steps, 6, 0.0)
        loss = F.cross_entropy(model.train()(audio), labels)
        opt.zero_grad()
        (loss + recipe.orthogonality.weight * orthogonality_penalty(decoder)).backward()
        opt.step()
    with torch.no_grad():
        logits = model.eval()(audio)
    return float(F.cross_entropy(logits, labels)), int((logits.argmax(1) == labels).sum()), len(labels)


@pytest.mark.slow
def test_unnormalised_size_learns_real_speech(gsc_dev_dir):
    """Regression: s-edge-naive-small (no BatchNorm, S5 init, identity skips, like s-edge-full) sat at ln 12 when
    the trainer fed it the raw waveform. With the trainer's standardisation and the s-edge-high-lr recipe it must
    fit 24 real words (2 per class, 2,000 samples each) in 60 steps. Measured: loss 1.61, accuracy 9/24 with the fix;
    2.35 with the raw waveform (the previous trainer), which fails here."""
    start = time.perf_counter()
    final, correct, n = _fit_word_crops(gsc_dev_dir, "naive-small", per_class=2, samples=2000)
    acc = correct / n
    print(f"naive-small, 24 real words, 60 steps: loss {final:.3f} (ln 12 = {math.log(12):.3f}), "
          f"accuracy {acc:.2f}, {time.perf_counter() - start:.1f} s")
    assert final < math.log(12) - 0.5 and acc >= 0.25  # chance: loss ln 12, accuracy 1/12


@pytest.mark.slow
def test_full_size_learns_real_speech_within_a_fixed_budget(gsc_dev_dir):
    """Regression for issue 21's "S-Edge full learns on a small real set within a fixed budget": s-edge-full
    (2.2 G MACs a clip, the largest size) must fit 12 real words (one per class, 1,000 samples around each) in
    60 steps of the s-edge-high-lr recipe with the trainer's standardisation. Measured on the 2-core machine
    (one thread, 30 s): loss 1.51, accuracy 5/12; with the raw waveform (the previous trainer) loss 2.42 and
    3/12, which fails here."""
    final, correct, _ = _fit_word_crops(gsc_dev_dir, "full", per_class=1, samples=1000)
    assert final < math.log(12) - 0.5 and correct >= 4, (final, correct)  # chance: ln 12, 1 of 12
