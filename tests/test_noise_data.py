"""Noise on real audio: the Speech Commands dev clips and the GSC background-noise recordings."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from kwsbench.noise import NoiseBank, achieved_snr, get_source, mix, render
from kwsbench.noise.bank import build_context
from kwsbench.noise.mixing import LEVEL_FLOOR, speech_level

pytestmark = pytest.mark.data

RECORDINGS = ["running_tap", "doing_the_dishes", "exercise_bike", "dude_miaowing", "gsc_white_noise",
              "gsc_pink_noise"]


@pytest.fixture(scope="module")
def dev(gsc_dev_dir):
    from kwsbench.data.speech_commands import load_clipset

    # use_cache=False: this fixture outlives the per-test cache redirection of conftest.
    return load_clipset(gsc_dev_dir, use_cache=False)


@pytest.fixture
def bank_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def dev_pink(dev):
    return render(get_source("pink"), list(dev.utterance_ids), 0, build_context(get_source("pink"), dev)[0])


@pytest.mark.parametrize("definition", ["rms", "active"])
def test_achieved_snr_on_every_dev_clip(dev, dev_pink, definition):
    noise = dev_pink
    level = speech_level(dev.audio, definition)
    checked = level > LEVEL_FLOOR
    assert checked.sum() == len(dev)  # every dev clip, silence included, is above the floor
    for snr in (-15, -10, -5, 0, 5, 10, 15):
        out = mix(dev.audio, noise, float(snr), definition)
        err = np.abs(achieved_snr(dev.audio, out, definition) - snr)
        assert np.all(np.isfinite(out)) and err[checked].max() < 0.01, (snr, err.max())


def test_bank_second_load_is_fast_and_identical(dev, bank_cache):
    first = NoiseBank(dev, "white", seed=0)
    assert not first.loaded_from_cache
    start = time.perf_counter()
    second = NoiseBank(dev, "white", seed=0)
    assert second.loaded_from_cache and time.perf_counter() - start < 1.0
    assert np.array_equal(first.noise, second.noise)


def test_bank_rows_independent_of_clipset_subset(dev, bank_cache):
    """The noise of an utterance does not depend on which other utterances are in the bank."""
    rows = np.arange(0, len(dev), 97)
    full = NoiseBank(dev, "pink", seed=1, use_cache=False).noise[rows]
    part = NoiseBank(dev.subset(rows), "pink", seed=1, use_cache=False).noise
    assert np.array_equal(full, part)


def test_babble_is_speech_from_other_speakers(dev):
    source = get_source("babble-keywords")
    ctx, _ = build_context(source, dev)
    idx = np.arange(0, len(dev), 13)
    ids, speakers = [dev.utterance_ids[i] for i in idx], [dev.speaker_ids[i] for i in idx]
    noise, infos = render(source, ids, 0, ctx, speakers, with_info=True)
    for spk, info in zip(speakers, infos, strict=True):
        talker_spk = {ctx.pool_speakers[r] for r in info.talkers}
        assert 5 <= len(info.talkers) <= 9 and spk not in talker_spk and "" not in talker_spk
        assert len(set(info.talkers)) == len(info.talkers)
    # Same triple -> same talkers and waveform, even rendered alone.
    assert np.array_equal(render(source, ids[:1], 0, ctx, speakers[:1]), noise[:1])
    from scipy.signal import welch

    freqs, psd = welch(noise.astype(np.float64), fs=16000, nperseg=1024, axis=-1)
    total = psd.mean(axis=0)
    speech_band = total[(freqs >= 100) & (freqs <= 4000)].sum() / total.sum()
    assert speech_band > 0.8, speech_band
    counts = {len(i.talkers) for i in infos}
    assert counts <= set(range(5, 10)) and len(counts) >= 3


def test_babble_is_independent_of_clipset_row_order(dev):
    source = get_source("babble-keywords")
    perm = np.random.default_rng(0).permutation(len(dev))
    ctx_a, _ = build_context(source, dev)
    ctx_b, _ = build_context(source, dev.subset(perm))
    ids, spk = list(dev.utterance_ids[:20]), list(dev.speaker_ids[:20])
    assert np.array_equal(render(source, ids, 0, ctx_a, spk), render(source, ids, 0, ctx_b, spk))


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_segments(noise_dir, name):
    source = get_source(name, noise_dir)
    ctx, hashes = build_context(source, None, noise_dir)
    assert len(hashes) == 1
    file_audio = ctx.recordings[0]
    ids = [f"u/{i}" for i in range(30)]
    noise, infos = render(source, ids, 0, ctx, with_info=True)
    offsets = [info.segment[1] for info in infos]
    for row, off in zip(noise, offsets, strict=True):
        assert 0 <= off and off + 16000 <= len(file_audio)
        seg = file_audio[off: off + 16000].astype(np.float64)
        assert np.allclose(row, seg / np.sqrt(np.mean(seg**2)), atol=1e-5)  # the segment, RMS-normalised
    assert len(set(offsets)) == len(offsets)
    assert np.array_equal(render(source, ids[::-1], 0, ctx)[::-1], noise)
    decoded, _ = sf.read(str(source_path(noise_dir, name)), dtype="float32")
    assert np.array_equal(file_audio, decoded if decoded.ndim == 1 else decoded[:, 0])


def source_path(noise_dir, name):
    from kwsbench.noise import resolve_recordings

    return resolve_recordings(get_source(name), noise_dir)[0]


def test_recording_bank_key_tracks_file_content(dev, noise_dir, tmp_path, bank_cache):
    small = dev.subset(np.arange(0, len(dev), 50))
    a = NoiseBank(small, "running_tap", noise_dir=noise_dir)
    audio, rate = sf.read(str(source_path(noise_dir, "running_tap")), dtype="float32")
    sf.write(str(tmp_path / "running_tap.flac"), audio[::-1].copy(), rate)
    b = NoiseBank(small, "running_tap", noise_dir=tmp_path)
    assert a.key != b.key and not b.loaded_from_cache
