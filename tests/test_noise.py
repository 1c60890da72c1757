"""Noise sources, determinism, mixing and the CLI on synthetic inputs (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from kwsbench.cli import main
from kwsbench.data.clipset import LABELS_12, ClipSet
from kwsbench.errors import BadInputError
from kwsbench.noise import (
    NoiseBank,
    achieved_snr,
    get_source,
    list_sources,
    load_definition,
    mix,
    render,
    speech_level,
    stable_hash,
)
from kwsbench.noise import bank as bank_mod
from kwsbench.noise.generators import RenderContext
from kwsbench.noise.mixing import LEVEL_FLOOR
from kwsbench.noise.plot import long_term_spectrum

SYNTHETIC = ["white", "pink", "brown", "factory", "street", "white-ncssm", "pink-ncssm", "factory-ncssm",
             "street-ncssm", "babble-synthetic-ncssm"]
IDS = [f"word/{i:04d}_nohash_0.wav" for i in range(40)]


def test_every_shipped_definition_loads_with_a_version():
    names = list_sources()
    for expected in [*SYNTHETIC, "babble", "babble-keywords", "babble-tts", "running_tap", "doing_the_dishes",
                     "exercise_bike", "dude_miaowing", "gsc_white_noise", "gsc_pink_noise"]:
        assert expected in names
    for name in names:
        s = get_source(name)
        assert s.version >= 1 and len(s.key) == 64 and s.path.stem == name


def test_sinusoid_babble_is_never_called_plain_babble():
    for name in list_sources():
        if get_source(name).kind == "babble-synthetic":
            assert "synthetic" in name and "NOT SPEECH" in get_source(name).description


def test_unknown_source_lists_known_ones():
    with pytest.raises(BadInputError, match="unknown noise source 'tractor'.*pink.*white"):
        get_source("tractor")


def _write(tmp_path: Path, doc: dict, name: str = "mine") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"name": "mine", "kind": "white", "description": "x"}, "version"),
        ({"name": "mine", "version": "1", "kind": "white", "description": "x"}, "version"),
        ({"name": "mine", "version": 1, "kind": "jet", "description": "x"}, "kind"),
        ({"name": "mine", "version": 1, "kind": "colored", "description": "x", "params": {"exponent": "1"}},
         "params.exponent"),
        ({"name": "mine", "version": 1, "kind": "colored", "description": "x", "params": {"expnent": 1.0}},
         "params.expnent"),
        ({"name": "mine", "version": 1, "kind": "factory", "description": "x",
          "params": {"impact_count": [9, 2]}}, "params.impact_count"),
        ({"name": "mine", "version": 1, "kind": "recording", "description": "x"}, "params.files"),
        ({"name": "other", "version": 1, "kind": "white", "description": "x"}, "name"),
    ],
)
def test_bad_definition_names_file_and_field(tmp_path, doc, field):
    path = _write(tmp_path, doc)
    with pytest.raises(BadInputError) as err:
        load_definition(path)
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value)


def test_parameter_change_changes_key(tmp_path):
    base = {"name": "mine", "version": 1, "kind": "colored", "description": "x", "params": {"exponent": 1.0}}
    k1 = load_definition(_write(tmp_path, base)).key
    base["params"]["exponent"] = 1.5
    assert load_definition(_write(tmp_path, base)).key != k1


def test_stable_hash_is_sha256_prefix():
    import hashlib

    assert stable_hash("yes/abc_nohash_0.wav") == int(hashlib.sha256(b"yes/abc_nohash_0.wav").hexdigest()[:16], 16)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_noise_independent_of_batch_size_and_order(name):
    source, ctx = get_source(name), RenderContext()
    whole = render(source, IDS, 3, ctx)
    ones = np.concatenate([render(source, [u], 3, ctx) for u in IDS])
    sevens = np.concatenate([render(source, IDS[i:i + 7], 3, ctx) for i in range(0, len(IDS), 7)])
    perm = np.random.default_rng(1).permutation(len(IDS))
    shuffled = render(source, [IDS[i] for i in perm], 3, ctx)
    assert np.array_equal(whole, ones) and np.array_equal(whole, sevens)
    assert np.array_equal(whole[perm], shuffled)
    assert np.all(np.isfinite(whole))
    # Different utterances, and a different seed, give different noise.
    assert not any(np.array_equal(whole[i], whole[i + 1]) for i in range(len(IDS) - 1))
    assert not np.array_equal(whole, render(source, IDS, 4, ctx))


def test_library_leaves_global_rng_alone():
    np.random.seed(123)
    torch.manual_seed(123)
    before_np, before_torch = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    render(get_source("factory"), IDS[:3], 0, RenderContext())
    assert np.array_equal(np.random.get_state()[1], before_np) and torch.equal(torch.get_rng_state(), before_torch)


def _slope_db_per_octave(noise: np.ndarray, lo: float = 100.0, hi: float = 6000.0) -> float:
    freqs, psd_db = long_term_spectrum(noise.reshape(-1), 16000, nperseg=4096)
    band = (freqs >= lo) & (freqs <= hi)
    return float(np.polyfit(np.log2(freqs[band]), psd_db[band], 1)[0])


@pytest.mark.parametrize(("name", "slope"), [("pink", -3.01), ("pink-ncssm", -3.01), ("brown", -6.02),
                                              ("white", 0.0)])
def test_spectral_slope(name, slope):
    noise = render(get_source(name), [f"u{i}" for i in range(64)], 0, RenderContext())
    assert abs(_slope_db_per_octave(noise) - slope) < 0.5


def _peak_prominence_db(psd_db: np.ndarray, freqs: np.ndarray, f: float) -> float:
    at = int(np.argmin(np.abs(freqs - f)))
    ring = (np.abs(freqs - f) >= 8) & (np.abs(freqs - f) <= 20)
    return float(psd_db[at] - np.median(psd_db[ring]))


@pytest.mark.parametrize("name", ["factory", "factory-ncssm"])
def test_factory_has_hum_harmonic_peaks(name):
    noise = render(get_source(name), [f"u{i}" for i in range(16)], 0, RenderContext())
    from scipy.signal import welch

    freqs, psd = welch(noise.astype(np.float64), fs=16000, nperseg=16000, axis=-1)
    psd_db = 10 * np.log10(psd.mean(axis=0))
    for f in (50, 100, 150, 200, 250):
        assert _peak_prominence_db(psd_db, freqs, f) > 10, f
    assert _peak_prominence_db(psd_db, freqs, 325) < 6  # between harmonics there is no line


def test_babble_synthetic_is_silent_before_onset():
    noise = render(get_source("babble-synthetic-ncssm"), IDS, 0, RenderContext())
    assert np.all(noise[:, : int(0.05 * 16000)] == 0) and np.all(np.abs(noise).max(axis=1) > 0)


def _speechlike(n: int, seed: int) -> np.ndarray:
    """Bursts of a harmonic tone inside silence: a clip with pauses, so rms and active differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    out = np.zeros((n, 16000), dtype=np.float32)
    for i in range(n):
        start, length = rng.integers(0, 8000), rng.integers(3000, 8000)
        env = np.zeros(16000)
        env[start:start + length] = np.hanning(length)
        out[i] = rng.uniform(0.01, 0.5) * env * np.sin(2 * np.pi * rng.uniform(100, 300) * t)
    return out


@pytest.mark.parametrize("definition", ["rms", "active"])
def test_mix_hits_target_snr_numpy_and_torch(definition):
    clean = _speechlike(32, 0)
    noise = render(get_source("pink"), IDS[:32], 0, RenderContext())
    snrs = np.linspace(-15, 15, 32)
    for snr in (-15.0, 0.0, 15.0, snrs):
        out = mix(clean, noise, snr, definition)
        assert out.dtype == np.float32 and out.shape == clean.shape
        assert np.max(np.abs(achieved_snr(clean, out, definition) - snr)) < 0.01
        t_out = mix(torch.from_numpy(clean), torch.from_numpy(noise), torch.as_tensor(snr), definition)
        assert t_out.dtype == torch.float32
        assert torch.allclose(t_out, torch.from_numpy(out), atol=1e-6)


def test_mix_scales_noise_only_and_same_noise_serves_every_snr():
    clean = _speechlike(4, 1).astype(np.float64)  # float64 so the subtraction below is exact enough
    noise = render(get_source("white"), IDS[:4], 0, RenderContext())
    a, b = mix(clean, noise, -5.0) - clean, mix(clean, noise, 5.0) - clean
    ratio = a / np.where(b == 0, 1, b)
    assert np.allclose(ratio[b != 0], 10 ** 0.5, rtol=1e-6)  # same waveform, 10 dB more gain


def test_active_level_exceeds_rms_for_clips_with_pauses():
    clean = _speechlike(16, 2)
    assert np.all(speech_level(clean, "active") > speech_level(clean, "rms") * 1.2)
    steady = np.sin(np.arange(16000) / 7.0)[None].astype(np.float32)
    assert np.allclose(speech_level(steady, "active"), speech_level(steady, "rms"), rtol=1e-3)


@pytest.mark.parametrize("definition", ["rms", "active"])
def test_silent_clip_uses_documented_floor(definition):
    clean = np.zeros((2, 16000), dtype=np.float32)
    noise = render(get_source("white"), IDS[:2], 0, RenderContext())
    out = mix(clean, noise, 10.0, definition)
    assert np.all(np.isfinite(out))
    rms = np.sqrt(np.mean(out.astype(np.float64) ** 2, axis=1))
    assert np.allclose(20 * np.log10(LEVEL_FLOOR / rms), 10.0, atol=0.01)
    t_out = mix(torch.from_numpy(clean), torch.from_numpy(noise), 10.0, definition)
    assert torch.isfinite(t_out).all()
    # All-zero noise stays zero instead of dividing by zero.
    assert np.array_equal(mix(clean, np.zeros_like(noise), 0.0, definition), clean)


def test_mix_rejects_bad_input():
    x = np.zeros((2, 100), dtype=np.float32)
    with pytest.raises(BadInputError, match="SNR definition"):
        mix(x, x, 0.0, "p56")
    with pytest.raises(ValueError, match="shape"):
        mix(x, x[:1], 0.0)
    with pytest.raises(TypeError):
        mix(x, torch.zeros(2, 100), 0.0)


def _tiny_clipset(n: int = 24) -> ClipSet:
    audio = _speechlike(n, 5)
    ids = tuple(f"{LABELS_12[i % 10]}/spk{i % 8:02d}_nohash_{i}.wav" for i in range(n))
    return ClipSet(audio=audio, labels=np.arange(n) % 10, label_names=LABELS_12, utterance_ids=ids,
                   speaker_ids=tuple(f"spk{i % 8:02d}" for i in range(n)), protocol="test-tiny")


def test_bank_is_cached_and_row_order_free(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path / "cache"))
    cs = _tiny_clipset()
    first = NoiseBank(cs, "street", seed=2)
    assert not first.loaded_from_cache and first.path.is_file() and first.path.parent.name == "noise"
    again = NoiseBank(cs, "street", seed=2)
    assert again.loaded_from_cache and again.key == first.key and np.array_equal(again.noise, first.noise)
    perm = np.random.default_rng(0).permutation(len(cs))
    shuffled = NoiseBank(cs.subset(perm), "street", seed=2)
    assert shuffled.loaded_from_cache and np.array_equal(shuffled.noise, first.noise[perm])
    assert NoiseBank(cs, "street", seed=3).key != first.key
    assert NoiseBank(cs, "street-ncssm", seed=2).key != first.key
    # The bank rows equal a direct render of the same ids.
    direct = render(get_source("street"), list(cs.utterance_ids), 2, RenderContext())
    assert np.array_equal(first.noise, direct)
    mixed = first.mix(0.0, "rms")
    assert np.max(np.abs(achieved_snr(cs.audio, mixed) - 0.0)) < 0.01
    mixed_t = first.mix(np.full(len(cs), 5.0), "active", device="cpu")
    assert isinstance(mixed_t, torch.Tensor)
    assert np.max(np.abs(achieved_snr(cs.audio, mixed_t.numpy(), "active") - 5.0)) < 0.01


def test_many_banks_equal_single_banks_and_keep_what_rendered_when_one_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bank_mod, "_CHUNK", 5)  # spans of several banks interleave over 2 workers
    monkeypatch.setenv(bank_mod.WORKERS_ENV, "2")
    cs = _tiny_clipset()
    cached = NoiseBank(cs, "pink", seed=4)
    banks = NoiseBank.many(cs, ["street", "pink", "factory-ncssm"], seed=4)
    assert [b.loaded_from_cache for b in banks] == [False, True, False]
    assert np.array_equal(banks[1].noise, cached.noise)
    for bank in banks:
        assert np.array_equal(bank.noise, NoiseBank(cs, bank.source, seed=4, use_cache=False).noise)
    tiny = cs.subset(np.arange(6))  # too few babble talkers: that bank fails, white is still rendered and cached
    with pytest.raises(BadInputError, match="babble"):
        NoiseBank.many(tiny, ["babble-keywords", "white"], seed=4)
    assert NoiseBank(tiny, "white", seed=4).loaded_from_cache


def test_babble_on_small_clipset_excludes_target_speaker(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path / "cache"))
    cs = _tiny_clipset()
    bank = NoiseBank(cs, "babble-keywords", seed=0)
    assert bank.noise.shape == (len(cs), 16000) and np.all(np.isfinite(bank.noise))
    tiny = cs.subset(np.arange(6))  # 6 speakers: too few talkers besides the target's
    with pytest.raises(BadInputError, match="babble"):
        NoiseBank(tiny, "babble-keywords", seed=0)


def test_recording_errors(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        NoiseBank(_tiny_clipset(), "running_tap", noise_dir=tmp_path / "missing")
    with pytest.raises(BadInputError, match="running_tap.*not found"):
        NoiseBank(_tiny_clipset(), "running_tap", noise_dir=tmp_path)
    bad = np.zeros(40000, dtype=np.float32)
    bad[123] = np.nan
    sf.write(str(tmp_path / "running_tap.wav"), bad, 16000, subtype="FLOAT")
    with pytest.raises(BadInputError, match="NaN/inf"):
        NoiseBank(_tiny_clipset(), "running_tap", noise_dir=tmp_path)
    sf.write(str(tmp_path / "running_tap.wav"), np.zeros(800, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(BadInputError, match="at least 16000"):
        NoiseBank(_tiny_clipset(), "running_tap", noise_dir=tmp_path)


def test_recording_at_other_rate_is_resampled(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path / "cache"))
    t = np.arange(3 * 8000) / 8000
    sf.write(str(tmp_path / "running_tap.flac"), 0.5 * np.sin(2 * np.pi * 440 * t), 8000)
    bank = NoiseBank(_tiny_clipset(), "running_tap", noise_dir=tmp_path)
    freqs, psd_db = long_term_spectrum(bank.noise[0], 16000, nperseg=1600)
    assert abs(freqs[np.argmax(psd_db)] - 440) <= 10


def test_cli_list_show_render(tmp_path, capsys):
    assert main(["noise", "list"]) == 0
    assert "babble-synthetic-ncssm" in capsys.readouterr().out
    assert main(["noise", "show", "factory"]) == 0
    assert "hum_base_hz: 50.0" in capsys.readouterr().out
    assert main(["noise", "show", "tractor"]) == 5
    wav, png = tmp_path / "pink.wav", tmp_path / "pink.png"
    assert main(["noise", "render", "pink", "--out", str(wav), "--png", str(png), "--clips", "2"]) == 0
    audio, rate = sf.read(str(wav))
    assert rate == 16000 and len(audio) == 32000 and np.max(np.abs(audio)) <= 0.9 + 1e-4
    assert png.stat().st_size > 10_000
    assert main(["noise", "render", "running_tap", "--noise-dir", str(tmp_path / "none"),
                 "--out", str(wav)]) == 5


def test_a_babble_figure_says_whose_speech_it_is_made_of(tmp_path, monkeypatch, capsys):
    """babble is built from a clip set's speech; its PNG title and WAV line name that set (the default embedded
    synthetic one, or --data-dir's folder), so two figures of 'babble v2' cannot be mistaken for one another."""
    import kwsbench.noise.plot as plot_mod
    from kwsbench.data.synth import generate

    titles = []
    monkeypatch.setattr(plot_mod, "plot_noise", lambda audio, rate, title, path: titles.append(title))
    data = generate(tmp_path / "my_set", seed=3, per_class=4)
    assert main(["noise", "render", "babble", "--data-dir", str(data), "--out", str(tmp_path / "b.wav"),
                 "--png", str(tmp_path / "b.png"), "--clips", "2"]) == 0
    assert titles == ["babble v2 (seed 0, from my_set)"]
    assert "source babble v2 (seed 0, from my_set)" in capsys.readouterr().out
    assert main(["noise", "render", "pink", "--out", str(tmp_path / "p.wav"), "--png", str(tmp_path / "p.png"),
                 "--clips", "1"]) == 0
    assert titles[-1] == "pink v1 (seed 0)"  # a generated noise needs no clip set


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("definition", ["rms", "active"])
def test_mix_on_gpu_matches_cpu(definition):
    clean = _speechlike(64, 3)
    noise = render(get_source("street"), [f"u{i}" for i in range(64)], 0, RenderContext())
    snrs = torch.linspace(-15, 15, 64)
    cpu = mix(torch.from_numpy(clean), torch.from_numpy(noise), snrs, definition)
    gpu = mix(torch.from_numpy(clean).cuda(), torch.from_numpy(noise).cuda(), snrs.cuda(), definition)
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-6)
    err = achieved_snr(torch.from_numpy(clean).cuda(), gpu, definition).cpu() - snrs.double()
    assert err.abs().max() < 0.01


def test_the_noise_figure_labels_its_spectrogram_colours_in_db():
    import matplotlib.pyplot as plt

    from kwsbench.noise.plot import noise_figure

    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    fig = noise_figure(audio, 16000, "white")
    try:
        colorbars = [ax for ax in fig.axes if ax.get_ylabel() == "power (dB/Hz)"]
        assert len(fig.axes) == 3 and len(colorbars) == 1
        low, high = fig.axes[1].images[0].get_clim()
        assert high - low == 80.0
    finally:
        plt.close(fig)
