"""kwsbench.audio: exact decoding, mix-down, resampling, length fixing, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from kwsbench.audio import fix_length, read_audio, resample
from kwsbench.errors import BadInputError


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_read_audio_is_int16_over_32768(tmp_path, fmt):
    pcm = np.random.default_rng(0).integers(-32768, 32767, 16000, dtype=np.int16)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, pcm, 16000, subtype="PCM_16", format=fmt)
    x, rate = read_audio(path)
    assert rate == 16000 and x.dtype == np.float32
    np.testing.assert_array_equal(x, pcm.astype(np.float32) / 32768)


def test_stereo_is_mixed_to_mono(tmp_path):
    left = np.full(100, 0.5, dtype=np.float32)
    right = np.full(100, -0.25, dtype=np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    x, _ = read_audio(tmp_path / "s.wav")
    assert x.shape == (100,)
    np.testing.assert_allclose(x, 0.125)


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00garbage that is not audio at all"])
def test_bad_file_names_the_file(tmp_path, content):
    path = tmp_path / "broken_clip.wav"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="broken_clip.wav"):
        read_audio(path)


def test_resample_keeps_kind_and_frequency():
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = resample(x, 16000, 8000)
    assert isinstance(y, np.ndarray) and y.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 8000 / 8000 - 440) <= 1  # 1 Hz bins at 8000 samples / 8 kHz
    yt = resample(torch.from_numpy(x)[None], 16000, 4000)
    assert isinstance(yt, torch.Tensor) and yt.shape == (1, 4000)
    assert resample(x, 16000, 16000) is x


def test_fix_length_pads_at_end_and_cuts():
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(x, 8), [1, 2, 3, 4, 5, 0, 0, 0])
    np.testing.assert_array_equal(fix_length(x, 3), [1, 2, 3])
    assert fix_length(np.ones((2, 5), np.float32), 7).shape == (2, 7)
