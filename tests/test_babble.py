"""Babble that is babble: `babble` speaks only the clip set's non-target words and never the target's speaker,
is continuous, and `babble-tts` is deterministic speech-engine babble without keywords."""

from __future__ import annotations

import numpy as np
import pytest

from kwsbench.data.clipset import LABELS_12, ClipSet
from kwsbench.errors import BadInputError
from kwsbench.noise import NoiseBank, get_source, render
from kwsbench.noise.bank import build_context
from kwsbench.noise.tts import GSC_WORDS, SENTENCES, voice_sentences, words


def _word_clipset(per_class: int = 6, speakers: int = 9) -> ClipSet:
    """12 classes of 'words': a tone burst of a class-specific pitch at a random place in one second of
    faint noise; keyword classes and _unknown_ alike, each clip of one of `speakers` speakers."""
    rng = np.random.default_rng(7)
    audio, labels, ids, spk = [], [], [], []
    t = np.arange(16000) / 16000
    for k, name in enumerate(LABELS_12):
        for j in range(per_class):
            x = 1e-3 * rng.standard_normal(16000)
            if name != "silence":
                start = int(rng.integers(0, 9000))
                x[start:start + 5000] += 0.3 * np.sin(2 * np.pi * (150 + 60 * k) * t[:5000]) * np.hanning(5000)
            folder = {"unknown": f"_unknown_/w{j}", "silence": "_silence_"}.get(name, name)
            speaker = "" if name == "silence" else f"spk{(k + j) % speakers}"
            ids.append(f"{folder}/{speaker or 'noise'}_nohash_{j}.wav")
            audio.append(x.astype(np.float32))
            labels.append(k)
            spk.append(speaker)
    return ClipSet(audio=np.stack(audio), labels=np.array(labels), label_names=LABELS_12, utterance_ids=tuple(ids),
                   speaker_ids=tuple(spk), protocol="test-words")


def test_babble_speaks_only_non_target_words_and_never_the_targets_speaker():
    cs = _word_clipset()
    source = get_source("babble")
    ctx, _ = build_context(source, cs)
    assert ctx.segment_ids and all(uid.startswith("_unknown_/") for uid in ctx.segment_ids)
    noise, infos = render(source, list(cs.utterance_ids), 0, ctx, list(cs.speaker_ids), with_info=True)
    for uid, speaker, info in zip(cs.utterance_ids, cs.speaker_ids, infos, strict=True):
        used_ids = {ctx.segment_ids[r] for r in info.talkers}
        used_speakers = {ctx.segment_speakers[r] for r in info.talkers}
        assert used_ids and all(u.startswith("_unknown_/") for u in used_ids), uid
        assert speaker not in used_speakers and "" not in used_speakers, uid
        assert uid not in used_ids
    assert np.all(np.isfinite(noise)) and np.allclose(np.sqrt(np.mean(noise.astype(np.float64) ** 2, axis=1)), 1,
                                                      atol=1e-3)
    # the same (seed, source, utterance) gives the same waveform rendered alone
    assert np.array_equal(render(source, list(cs.utterance_ids[:1]), 0, ctx, list(cs.speaker_ids[:1])), noise[:1])


def test_babble_is_continuous_where_keyword_clips_leave_gaps():
    """Frames more than 20 dB below the clip's RMS: chained words leave almost none."""
    cs = _word_clipset()

    def quiet_fraction(name: str) -> float:
        bank = NoiseBank(cs, name, seed=0, use_cache=False).noise.astype(np.float64)
        frames = bank[:, :15680].reshape(len(cs), -1, 320)
        level = 10 * np.log10(np.mean(frames**2, axis=-1) + 1e-12)
        return float(np.mean(level < -20.0))  # the rows are at unit RMS (0 dB)

    assert quiet_fraction("babble") < 0.02


def test_babble_without_non_target_words_says_to_use_the_speech_engine():
    cs = _word_clipset()
    keywords_only = cs.subset(np.flatnonzero([not u.startswith("_unknown_/") for u in cs.utterance_ids]))
    with pytest.raises(BadInputError, match="babble-tts"):
        NoiseBank(keywords_only, "babble", seed=0, use_cache=False)


def test_speech_engine_sentences_never_say_a_speech_commands_word():
    assert len(GSC_WORDS) == 35
    spoken = {w for _, text in voice_sentences(24, 4) for w in words(text)}
    assert spoken and not spoken & GSC_WORDS
    assert {text for _, text in voice_sentences(24, 4)} <= set(SENTENCES)


@pytest.mark.slow
def test_babble_tts_is_deterministic_and_keeps_a_voice_per_talker(tmp_path, monkeypatch):
    source = get_source("babble-tts")
    ids = [f"clip/{i}" for i in range(12)]
    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path / "a"))
    ctx_a, key_a = build_context(source, None)
    first, infos = render(source, ids, 3, ctx_a, None, with_info=True)
    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path / "b"))  # spoken again from nothing
    ctx_b, key_b = build_context(source, None)
    assert key_a == key_b and np.array_equal(render(source, ids, 3, ctx_b, None), first)
    assert len(set(ctx_a.segment_speakers)) == 24
    for info in infos:
        assert 6 <= len({ctx_a.segment_speakers[r] for r in info.talkers}) <= 8
    # a target spoken by one of the engine's voices never hears that voice
    voice = ctx_a.segment_speakers[0]
    _, infos = render(source, ids, 3, ctx_a, [voice] * len(ids), with_info=True)
    assert all(voice not in {ctx_a.segment_speakers[r] for r in info.talkers} for info in infos)
    assert not np.array_equal(render(source, ids, 4, ctx_a, None), first)  # another seed, other babble


def test_babble_on_real_speech_speaks_unknown_words_of_other_speakers(gsc_dev_dir):
    from kwsbench.data.speech_commands import load_clipset
    from kwsbench.data.subsets import stratified_subset

    dev = stratified_subset(load_clipset(gsc_dev_dir), 10, 0)
    source = get_source("babble")
    ctx, _ = build_context(source, dev)
    assert ctx.segment_ids and all(uid.startswith("_unknown_/") for uid in ctx.segment_ids)
    _, infos = render(source, list(dev.utterance_ids), 0, ctx, list(dev.speaker_ids), with_info=True)
    for speaker, info in zip(dev.speaker_ids, infos, strict=True):
        assert 6 <= info.streams <= 8
        assert all(ctx.segment_ids[r].startswith("_unknown_/") for r in info.talkers)
        assert speaker not in {ctx.segment_speakers[r] for r in info.talkers}
