"""Speech Commands readers: the shared dev set, synthetic canonical and full layouts, cache, errors, CLI."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kwsbench.cli import main
from kwsbench.data.clipset import LABELS_12, compute_fingerprint
from kwsbench.data.speech_commands import (
    CANONICAL_FOLDERS,
    SILENCE_COUNTS,
    SILENCE_GAIN,
    WORDS_35,
    load_clipset,
    parse_speaker,
)
from kwsbench.errors import BadInputError, DatasetError

DEV_COUNTS = {"silence": 218, "unknown": 204, "down": 202, "go": 202, "left": 217, "no": 211, "off": 202, "on": 195,
              "right": 202, "stop": 222, "up": 209, "yes": 211}
# Regression constant: computed once with this reader on ../shared/data/gsc_v2_test_dev (2,495 clips);
# the test below also re-derives it from the decoded samples, so this only guards against drift.
DEV_FINGERPRINT = "d8fe1b1ca089287d210d8dd55742ce0b90da03574fa462e2e5d59ba431946357"


def assert_same_clipset(a, b) -> None:
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.utterance_ids == b.utterance_ids and a.speaker_ids == b.speaker_ids
    assert (a.label_names, a.protocol, a.fingerprint, a.skipped) == (b.label_names, b.protocol, b.fingerprint,
                                                                     b.skipped)


def test_parse_speaker():
    assert parse_speaker("022cd682_nohash_0.flac") == "022cd682"
    assert parse_speaker("backward_0c540988_nohash_0.wav.flac") == "0c540988"
    assert parse_speaker("1024.flac") == ""


# ---------------------------------------------------------------- the shared dev set (real clips)

@pytest.mark.data
def test_dev_set_counts_speakers_fingerprint_and_cache(gsc_dev_dir):
    fresh = load_clipset(gsc_dev_dir, use_cache=False)
    assert len(fresh) == 2495
    assert fresh.protocol == "v2-12-official" and fresh.label_names == LABELS_12
    assert fresh.class_counts() == {name: DEV_COUNTS[name] for name in LABELS_12}
    assert len({s for s in fresh.speaker_ids if s}) == 126
    silence = fresh.labels == LABELS_12.index("silence")
    assert all(s == "" for s, sil in zip(fresh.speaker_ids, silence, strict=True) if sil)
    assert all(len(s) == 8 for s, sil in zip(fresh.speaker_ids, silence, strict=True) if not sil)
    assert "_unknown_/backward_0c540988_nohash_0.wav.flac" in fresh.utterance_ids

    first = load_clipset(gsc_dev_dir)  # decodes and fills the cache
    t0 = time.perf_counter()
    cached = load_clipset(gsc_dev_dir)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"cached load took {elapsed:.2f} s"
    assert_same_clipset(fresh, first)
    assert_same_clipset(fresh, cached)
    recomputed = compute_fingerprint(cached.utterance_ids, cached.labels, cached.label_names, cached.audio)
    assert recomputed == fresh.fingerprint == DEV_FINGERPRINT


@pytest.mark.data
def test_dev_set_cli_info(gsc_dev_dir, capsys):
    assert main(["data", "info", str(gsc_dev_dir)]) == 0
    out = capsys.readouterr().out
    assert "v2-12-official" in out and "2495" in out and "126" in out


# ---------------------------------------------------------------- synthetic canonical layout

def _tone(n: int, seed: int, rate: int = 16000) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(-0.5, 0.5, n)).astype(np.float32)


def make_canonical(root: Path, per_class: int = 2) -> Path:
    for c, folder in enumerate(CANONICAL_FOLDERS):
        (root / folder).mkdir(parents=True)
        for n in range(per_class):
            if folder == "_silence_":
                name = f"{n}.wav"
            elif folder == "_unknown_":
                name = f"bed_{c:04x}{n:04x}_nohash_0.wav.wav"
            else:
                name = f"{c:04x}{n:04x}_nohash_{n}.wav"
            sf.write(root / folder / name, _tone(16000, 100 * c + n), 16000, subtype="PCM_16")
    (root / "README.md").write_text("not audio")
    return root


def test_canonical_layout_reads_and_pads_resamples_mixes(tmp_path):
    root = make_canonical(tmp_path / "set")
    sf.write(root / "yes" / "short000_nohash_0.wav", _tone(8000, 1), 16000, subtype="PCM_16")
    sf.write(root / "yes" / "long0000_nohash_0.wav", _tone(20000, 2), 16000, subtype="PCM_16")
    sf.write(root / "no" / "rate8000_nohash_0.wav", _tone(8000, 3), 8000, subtype="PCM_16")
    sf.write(root / "up" / "stereo00_nohash_0.wav", np.stack([_tone(16000, 4)] * 2, 1), 16000, subtype="PCM_16")
    with pytest.warns(UserWarning) as record:
        cs = load_clipset(root, use_cache=False)
    messages = " ".join(str(w.message) for w in record)
    assert "resampled" in messages and "mixed to mono" in messages
    assert len(cs) == 24 + 4 and cs.audio.shape == (28, 16000)
    assert cs.meta["padded"] == 1 and cs.meta["cut"] == 1 and cs.meta["resampled"] == 1 and cs.meta["stereo"] == 1
    short = cs.audio[cs.utterance_ids.index("yes/short000_nohash_0.wav")]
    assert np.all(short[8000:] == 0) and np.any(short[:8000] != 0)
    assert cs.speaker_ids[cs.utterance_ids.index("_unknown_/bed_000b0000_nohash_0.wav.wav")] == "000b0000"
    assert cs.class_counts()["yes"] == 4 and cs.class_counts()["silence"] == 2


def test_corrupt_file_errors_or_is_skipped(tmp_path, capsys):
    root = make_canonical(tmp_path / "set")
    (root / "go" / "deadbeef_nohash_0.wav").write_bytes(b"")
    with pytest.raises(BadInputError, match="deadbeef_nohash_0.wav"):
        load_clipset(root)
    cs = load_clipset(root, on_bad_file="skip")
    assert cs.skipped == 1 and len(cs) == 24
    assert main(["data", "info", str(root)]) == 5
    assert "deadbeef_nohash_0.wav" in capsys.readouterr().err
    assert main(["data", "info", str(root), "--on-bad-file", "skip"]) == 0


def test_info_names_a_long_data_folder_on_one_line(tmp_path, capsys):
    """The path was the table's title, which rich wraps to the (narrow) table's width: it came out cut in two."""
    root = make_canonical(tmp_path / ("a_data_folder_with_a_long_name_[v2]_" + "x" * 40))
    assert main(["data", "info", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"data set: {root}" in lines, lines[:3]


def test_cache_sees_changed_files(tmp_path):
    root = make_canonical(tmp_path / "set")
    a = load_clipset(root)
    assert_same_clipset(a, load_clipset(root))
    sf.write(root / "yes" / "00000000_nohash_0.wav", _tone(16000, 999), 16000, subtype="PCM_16")
    b = load_clipset(root)
    assert b.fingerprint != a.fingerprint
    assert_same_clipset(b, load_clipset(root, use_cache=False))


def test_missing_and_unknown_layouts_exit_4(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=f"kwsbench data download gsc-v2-test --dest {missing}"):
        load_clipset(missing)
    assert main(["data", "info", str(missing)]) == 4
    assert f"kwsbench data download gsc-v2-test --dest {missing}" in capsys.readouterr().err
    odd = tmp_path / "odd"
    (odd / "cats").mkdir(parents=True)
    assert main(["data", "info", str(odd)]) == 4
    err = capsys.readouterr().err
    assert "_silence_" in err and "testing_list.txt" in err
    with pytest.raises(DatasetError, match="v2-12-official"):
        load_clipset(make_canonical(tmp_path / "c"), protocol="v2-35")
    with pytest.raises(BadInputError):
        load_clipset(tmp_path / "c", protocol="v9")


# ---------------------------------------------------------------- synthetic full v0.02 layout

FULL_WORDS = {"yes": 6, "no": 6, "bed": 6, "sheila": 3}  # two keywords, two non-keywords


def make_full(root: Path) -> Path:
    test, val = [], []
    for w, count in FULL_WORDS.items():
        (root / w).mkdir(parents=True)
        for n in range(count):
            name = f"{hashlib.sha256(w.encode()).hexdigest()[:4]}{n:04x}_nohash_0.wav"
            sf.write(root / w / name, _tone(12000 + 100 * n, len(w) * 10 + n), 16000, subtype="PCM_16")
            (test if n % 3 == 0 else val if n % 3 == 1 else []).append(f"{w}/{name}")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    bg = root / "_background_noise_"
    bg.mkdir()
    for k, name in enumerate(["b_noise", "a_noise"]):
        sf.write(bg / f"{name}.wav", _tone(16000 * 3 + 123 * k, 77 + k), 16000, subtype="PCM_16")
    (bg / "README.md").write_text("noise")
    return root


@pytest.fixture(scope="module")
def full_root(tmp_path_factory):
    return make_full(tmp_path_factory.mktemp("full") / "speech_commands_v0.02")


def test_full_layout_every_protocol_and_split(full_root):
    n_test = {w: len([n for n in range(c) if n % 3 == 0]) for w, c in FULL_WORDS.items()}
    n_val = {w: len([n for n in range(c) if n % 3 == 1]) for w, c in FULL_WORDS.items()}
    n_train = {w: c - n_test[w] - n_val[w] for w, c in FULL_WORDS.items()}
    for split, per_word in (("test", n_test), ("validation", n_val), ("train", n_train)):
        v12 = load_clipset(full_root, split=split, use_cache=False)  # default protocol for the full layout
        assert v12.protocol == ("v2-12-all-unknown" if split == "test" else f"v2-12-all-unknown:{split}")
        counts = v12.class_counts()
        assert counts["yes"] == per_word["yes"] and counts["no"] == per_word["no"]
        assert counts["unknown"] == per_word["bed"] + per_word["sheila"]
        assert counts["silence"] == SILENCE_COUNTS[split]
        v35 = load_clipset(full_root, protocol="v2-35", split=split, use_cache=False)
        assert v35.label_names == WORDS_35
        assert {k: v for k, v in v35.class_counts().items() if v} == {w: c for w, c in per_word.items() if c}
        v10 = load_clipset(full_root, protocol="v2-10", split=split, use_cache=False)
        assert len(v10.label_names) == 10 and len(v10) == per_word["yes"] + per_word["no"]
        assert all(uid.split("/")[0] in ("yes", "no") for uid in v10.utterance_ids)
    train = load_clipset(full_root, protocol="v2-35", split="train", use_cache=False)
    test = load_clipset(full_root, protocol="v2-35", split="test", use_cache=False)
    assert not set(train.utterance_ids) & set(test.utterance_ids)
    assert train.speaker_ids[0] == train.utterance_ids[0].split("/")[1].split("_")[0]


def test_full_layout_silence_is_deterministic_noise_crops(full_root):
    a = load_clipset(full_root, use_cache=False)
    b = load_clipset(full_root, use_cache=False)
    assert_same_clipset(a, b)
    sil = np.flatnonzero(a.labels == LABELS_12.index("silence"))
    noises = [sf.read(full_root / "_background_noise_" / f, dtype="float32")[0] for f in ("a_noise.wav", "b_noise.wav")]
    for k, i in enumerate(sil[:6]):
        clip = a.audio[i] / SILENCE_GAIN
        noise = noises[k % 2]  # crop k uses file k mod n in sorted order
        starts = np.flatnonzero(np.abs(noise[: noise.size - 16000 + 1] - clip[0]) < 1e-6)
        assert any(np.allclose(noise[o:o + 16000], clip, atol=1e-6) for o in starts), f"crop {k} not from file {k % 2}"
    assert len({a.audio[i].tobytes() for i in sil}) > len(sil) // 2  # offsets vary between crops
    val = load_clipset(full_root, split="validation", use_cache=False)
    val_sil = val.audio[val.labels == LABELS_12.index("silence")]
    assert not np.array_equal(val_sil[:10], a.audio[sil[:10]])
    assert a.speaker_ids[sil[0]] == ""


def test_full_layout_protocol_errors(full_root, tmp_path):
    with pytest.raises(DatasetError, match="canonical test set"):
        load_clipset(full_root, protocol="v2-12-official")
    parent = full_root.parent  # the folder a download extracted into is found one level down
    assert load_clipset(parent, protocol="v2-10").protocol == "v2-10"
    broken = make_full(tmp_path / "broken")
    (broken / "yes").rename(broken / "yes_gone")
    with pytest.raises(DatasetError, match="missing"):
        load_clipset(broken, protocol="v2-10")
