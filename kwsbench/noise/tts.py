"""The speech of `babble-tts`: sentences spoken by many voices of the embedded speech engine (espeak-ng, as the
synthetic data set uses it), rendered once, cached on disk, the same bits on every run.

No sentence contains any of the 35 Speech Commands words, so the babble never says a word a model listens
for (tests check it). Each voice speaks its own few sentences; the voices come from kwsbench.data.synth's
voice generator with a seed of their own (`voice_seed`), so they are not the voices of the synthetic sets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile

import numpy as np

from kwsbench.paths import cache_dir

# The 35 words of Speech Commands v2: none of them may be spoken by the babble.
GSC_WORDS = frozenset((
    "yes no up down left right on off stop go zero one two three four five six seven eight nine bed bird cat "
    "dog happy house marvin sheila tree wow backward forward follow learn visual").split())

SENTENCES = (
    "The weather was mild and the market was busy with people buying bread.",
    "She said that the train would arrive at the station after lunch.",
    "We painted the kitchen walls a pale shade of green last summer.",
    "The children were laughing while their parents talked about the news.",
    "Please remember to bring the blue umbrella when it rains tomorrow.",
    "His grandfather built a small wooden boat by the lake years ago.",
    "The museum has a large collection of ancient coins and maps.",
    "They argued for hours about which film was the better story.",
    "A warm cup of tea is all I need after a long walk.",
    "The library closes early during the holidays, so plan ahead.",
    "Our neighbour grows tomatoes, beans and pumpkins in the garden.",
    "The meeting was moved to Thursday because the manager was away.",
    "I think the soup needs a little more salt and pepper.",
    "The orchestra played a quiet piece before the interval began.",
    "Many travellers prefer the coastal road for its beautiful views.",
    "My sister is studying chemistry at a university in the north.",
    "The baker opens the shop at dawn and sells fresh rolls.",
    "Could you tell me where the nearest pharmacy is, please?",
    "The river was wide and calm, and the sky was clear.",
    "We should check the timetable before we leave the hotel.",
    "The painter mixed the colours carefully with a wooden knife.",
    "After dinner, the family sat together and told old stories.",
    "The students finished their project just before the deadline.",
    "It was the kind of afternoon when nothing much happens.",
    "The doctor asked him to rest and drink plenty of water.",
    "The village festival has music, dancing and a big parade.",
    "Her brother collects stamps from every country he visits.",
    "The bridge was closed for repairs during the whole month.",
    "They planted apple and pear saplings along the fence.",
    "The journalist wrote a long article about the election.",
    "Those shoes are comfortable, but the price is rather high.",
    "The gardener trimmed the hedges and swept the path.",
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def voice_sentences(voices: int, per_voice: int) -> list[tuple[int, str]]:
    """(voice index, sentence) for every voice, each voice its own consecutive run of the list."""
    return [(v, SENTENCES[(v * per_voice + j) % len(SENTENCES)]) for v in range(voices) for j in range(per_voice)]


def _pool_key(voices: int, per_voice: int, voice_seed: int) -> str:
    from kwsbench.data.synth import SYNTH_VERSION

    try:
        from importlib.metadata import version

        engine = version("espeakng-loader")
    except Exception:  # noqa: BLE001 - not installed: rendering will say so
        engine = "?"
    blob = json.dumps({"sentences": SENTENCES, "voices": voices, "per_voice": per_voice, "voice_seed": voice_seed,
                       "synth": SYNTH_VERSION, "engine": engine}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def tts_pool(voices: int, per_voice: int, voice_seed: int) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """The sentences at 16 kHz (float32, as spoken) and the id of the voice of each, cached on disk."""
    path = cache_dir() / "noise" / f"tts-{_pool_key(voices, per_voice, voice_seed)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            n = int(z["count"])
            return [z[f"s{i}"] for i in range(n)], tuple(str(x) for x in z["speakers"])
    from kwsbench.data.synth import _resample_all, make_speakers, synthesize_in_fresh_process

    speakers = make_speakers(voice_seed, voices)
    plan = voice_sentences(voices, per_voice)
    rate, waves = synthesize_in_fresh_process([(text, speakers[v]) for v, text in plan])
    audio = [np.asarray(w, dtype=np.float32) for w in _resample_all(waves, rate)]
    ids = tuple(speakers[v].id for v, _ in plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, count=np.int64(len(audio)), speakers=np.asarray(ids), **{f"s{i}": a for i, a in enumerate(audio)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return audio, ids


def pool_sha256(audio: list[np.ndarray]) -> str:
    """What the noise-bank key records of the spoken pool: another engine build that speaks differently
    never reuses a cached bank."""
    h = hashlib.sha256()
    for a in audio:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()
