"""Speech Commands v0.02 readers: the full archive layout and the canonical 12-folder test-set layout.

Protocols (see ../shared/reference/reported.md Section 1):
- v2-12-official: the released canonical test set (12 folders), test split only.
- v2-12-all-unknown: full layout, every listed file, non-keywords -> unknown, plus silence crops
  (2,000 / 500 / 500 for train / validation / test, as the NC-SSM recipe).
- v2-35: full layout, the 35 words, no silence or unknown.
- v2-10: full layout, the 10 keywords only.
"""

from __future__ import annotations

import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kwsbench.audio import fix_length, read_audio_raw, resample
from kwsbench.data import cache
from kwsbench.data.clipset import BRIDGE_ITEMS_MARK, CLIP_SAMPLES, KEYWORDS_10, LABELS_12, SAMPLE_RATE, ClipSet
from kwsbench.errors import BadInputError, DatasetError, KwsbenchError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".aif", ".aiff"})
WORDS_35 = tuple(sorted((
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)))
CANONICAL_FOLDERS = (*KEYWORDS_10, "_silence_", "_unknown_")
FULL_PROTOCOLS = ("v2-12-all-unknown", "v2-35", "v2-10")
PROTOCOLS = ("v2-12-official", *FULL_PROTOCOLS)
SPLITS = ("train", "validation", "test")
BACKGROUND_DIR = "_background_noise_"
# Where `kwsbench data download` puts each archive under its --dest parent; also accepted one level down.
KNOWN_SUBDIRS = {"speech_commands_test_set_v0.02": "gsc-v2-test", "speech_commands_v0.02": "gsc-v2"}

SILENCE_COUNTS = {"train": 2000, "validation": 500, "test": 500}
SILENCE_GAIN = np.float32(0.1)  # the NC-SSM crops are scaled by 0.1
_SILENCE_SEED = 20180411  # fixed root of the silence crops (v0.02 release date); crop i depends only on i
_SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}
_SPEAKER_RE = re.compile(r"(?:^|_)([^_]+)_nohash_")


@dataclass(frozen=True)
class _Item:
    """One clip to decode: a file, or a silence crop (noise file, offset) with no file of its own."""

    uid: str
    label: int
    speaker: str
    path: Path | None = None
    crop: tuple[str, int] | None = None


def parse_speaker(file_name: str) -> str:
    """The speaker hash before `_nohash_` ("" when absent, as for silence clips).

    Works for `022cd682_nohash_0.flac` and `backward_0c540988_nohash_0.wav.flac` alike.
    """
    m = _SPEAKER_RE.search(Path(file_name).name)
    return m.group(1) if m else ""


def download_command(data_dir: Path, protocol: str | None) -> str:
    """The exact command that puts the right archive at `data_dir`."""
    name = "gsc-v2" if protocol in FULL_PROTOCOLS else "gsc-v2-test"
    return f"kwsbench data download {name} --dest {data_dir}"


def detect_layout(root: Path) -> str:
    """'canonical' or 'full'; DatasetError listing the expected layouts otherwise."""
    if all((root / d).is_dir() for d in CANONICAL_FOLDERS):
        return "canonical"
    if (root / "testing_list.txt").is_file() and (root / "validation_list.txt").is_file():
        return "full"
    found = sorted(p.name for p in root.iterdir())[:15] if root.is_dir() else []
    raise DatasetError(
        f"{root} matches no known Speech Commands layout (found: {', '.join(found) or 'nothing'}). Expected "
        f"either (a) the canonical test set: 12 folders {', '.join(CANONICAL_FOLDERS)} (protocol v2-12-official; "
        "`kwsbench data download gsc-v2-test`), or (b) the full v0.02 archive: <word>/*.wav folders with "
        f"testing_list.txt, validation_list.txt and {BACKGROUND_DIR}/ (protocols {', '.join(FULL_PROTOCOLS)}; "
        "`kwsbench data download gsc-v2`)."
    )


def resolve_root(data_dir: str | Path, protocol: str | None = None) -> tuple[Path, str]:
    """The dataset root and its layout; accepts the folder a download extracted into, or its parent."""
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetError(
            f"dataset directory {root} does not exist. Get it with: {download_command(root, protocol)}"
        )
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory; pass the folder holding the Speech Commands data")
    try:
        return root, detect_layout(root)
    except DatasetError:
        for sub in KNOWN_SUBDIRS:
            if (root / sub).is_dir():
                return resolve_root(root / sub, protocol)
        raise


def check_request(data_dir: str | Path, protocol: str | None = None, split: str = "test") -> tuple[Path, str, str]:
    """(root, layout, protocol) of a request the folder can serve; the errors `load_clipset` would give, without
    reading a clip (a run says them before it chooses its models)."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise BadInputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if split not in SPLITS:
        raise BadInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root, layout = resolve_root(data_dir, protocol)
    protocol = protocol or ("v2-12-official" if layout == "canonical" else "v2-12-all-unknown")
    if layout == "canonical" and (protocol != "v2-12-official" or split != "test"):
        raise DatasetError(
            f"{root} is the canonical test-set layout, which only holds protocol v2-12-official, split test "
            f"(asked: {protocol}, {split}). Protocols {', '.join(FULL_PROTOCOLS)} need the full archive: "
            f"kwsbench data download gsc-v2"
        )
    if layout != "canonical" and protocol == "v2-12-official":
        raise DatasetError(
            f"{root} is the full v0.02 layout; protocol v2-12-official needs the canonical test set: "
            "kwsbench data download gsc-v2-test"
        )
    return root, layout, protocol


def load_clipset(
    data_dir: str | Path,
    protocol: str | None = None,
    split: str = "test",
    on_bad_file: str = "error",
    use_cache: bool = True,
) -> ClipSet:
    """Read a Speech Commands folder into one ClipSet (decoded once, then served from the cache).

    protocol None: v2-12-official for the canonical layout, v2-12-all-unknown for the full one.
    on_bad_file: "error" raises BadInputError naming the file; "skip" leaves it out and counts it
    in `ClipSet.skipped`. Non-test splits get the protocol name `<protocol>:<split>`.
    """
    if on_bad_file not in ("error", "skip"):
        raise BadInputError(f"on_bad_file must be 'error' or 'skip', not {on_bad_file!r}")
    root, layout, protocol = check_request(data_dir, protocol, split)
    if layout == "canonical":
        label_names, items = LABELS_12, _canonical_items(root)
    else:
        label_names, items = _full_items(root, protocol, split)
    name = protocol if split == "test" else f"{protocol}:{split}"
    files = _stat_files(root, items)
    key = cache.cache_key(root, files, name, split, extra=on_bad_file)
    if use_cache and (hit := cache.load_cached(key)) is not None:
        return hit
    cs = _decode(root, items, label_names, name, on_bad_file)
    cs.meta.update({"layout": layout, "split": split, "root": str(root)})
    if use_cache:
        try:
            cache.store_cached(key, cs)
        except OSError as err:  # a read-only or full cache disk costs speed, not correctness
            warnings.warn(f"could not write the clip-set cache under {cache.clipset_cache_dir()}: {err}", stacklevel=2)
    return cs


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def _canonical_items(root: Path) -> list[_Item]:
    items = []
    for folder in CANONICAL_FOLDERS:
        label = LABELS_12.index(folder.strip("_"))
        files = _audio_files(root / folder) if (root / folder).is_dir() else []
        if not files:  # scored without it, the class would silently vanish from the accuracy and the macro F1
            raise DatasetError(
                f"class folder {root / folder} is missing or holds no audio files; every class of the canonical "
                "test set needs its clips. Restore them, or download the set again: kwsbench data download "
                "gsc-v2-test")
        for p in files:
            speaker = "" if folder == "_silence_" else parse_speaker(p.name)
            items.append(_Item(uid=f"{folder}/{p.name}", label=label, speaker=speaker, path=p))
    return items


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _full_items(root: Path, protocol: str, split: str) -> tuple[tuple[str, ...], list[_Item]]:
    """Items of one split under one protocol, in sorted path order, silence crops last."""
    test, val = _read_list(root / "testing_list.txt"), _read_list(root / "validation_list.txt")
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != BACKGROUND_DIR and d.name in WORDS_35)
    if not words:
        raise DatasetError(f"{root} has testing_list.txt but no word folders ({', '.join(WORDS_35[:5])}, ...)")
    if split == "train":
        rels = [f"{w}/{p.name}" for w in words for p in _audio_files(root / w)]
        chosen = sorted(r for r in rels if r not in test and r not in val)
    else:
        chosen = sorted(test if split == "test" else val)
        missing = [r for r in chosen if not (root / r).is_file()]
        if missing:
            raise DatasetError(
                f"{len(missing)} files named in {split} list of {root} are missing (first: {missing[0]}); "
                "the archive looks incompletely extracted; download it again: kwsbench data download gsc-v2"
            )
    if protocol == "v2-35":
        label_names = WORDS_35
    else:
        label_names = LABELS_12 if protocol == "v2-12-all-unknown" else KEYWORDS_10
    items = []
    for rel in chosen:
        word = rel.split("/", 1)[0]
        if word in label_names:
            label = label_names.index(word)
        elif protocol == "v2-12-all-unknown" and word in WORDS_35:
            label = LABELS_12.index("unknown")
        else:
            continue
        items.append(_Item(uid=rel, label=label, speaker=parse_speaker(rel), path=root / rel))
    if protocol == "v2-12-all-unknown":
        items += _silence_items(root, split)
    return label_names, items


def _silence_items(root: Path, split: str, bg: Path | None = None, count: int | None = None) -> list[_Item]:
    """Crop i: noise file i mod n (sorted names), offset from a generator seeded by (split, i) only.

    `bg`: the folder of recordings (default root/_background_noise_); crops are named relative to `root`.
    """
    bg = bg or root / BACKGROUND_DIR
    noise = _audio_files(bg) if bg.is_dir() else []
    if not noise:
        raise DatasetError(
            f"{bg} holds no noise recordings; protocol v2-12-all-unknown cuts its silence clips from them. "
            "Download the full archive again: kwsbench data download gsc-v2"
        )
    lengths = [_frames(p) for p in noise]
    items = []
    for i in range(SILENCE_COUNTS[split] if count is None else min(count, SILENCE_COUNTS[split])):
        k = i % len(noise)
        rng = np.random.default_rng(np.random.SeedSequence([_SILENCE_SEED, _SPLIT_CODE[split], i]))
        offset = int(rng.integers(0, max(lengths[k] - CLIP_SAMPLES, 0) + 1))
        rel = noise[k].relative_to(root).as_posix()
        items.append(_Item(uid=f"_silence_/{split}-{i:04d}", label=LABELS_12.index("silence"), speaker="",
                           crop=(rel, offset)))
    return items


def silence_clipset(background_dir: str | Path, split: str = "test", count: int | None = None) -> ClipSet:
    """The silence items of protocol v2-12-all-unknown alone, cut from a folder of the background-noise
    recordings (the archive's _background_noise_, or the same files re-encoded): the same crops, ids and
    labels as inside the full protocol, so a bridged estimate measures silence by the protocol's own rule.
    `count`: only the first crops (default: all of the split's)."""
    bg = Path(background_dir).expanduser()
    cs = _decode(bg, _silence_items(bg, split, bg, count), LABELS_12, f"v2-12-all-unknown{BRIDGE_ITEMS_MARK}-{split}",
                 "error")
    cs.meta.update({"root": str(bg), "split": split})
    return cs


def zero_silence_clipset(n: int = 4) -> ClipSet:
    """The silence items of TensorFlow's input pipeline at test time (protocol v2-12-tf-pipeline): all-zero audio."""
    return ClipSet(
        audio=np.zeros((n, CLIP_SAMPLES), dtype=np.float32),
        labels=np.full(n, LABELS_12.index("silence"), dtype=np.int64), label_names=LABELS_12,
        utterance_ids=tuple(f"_silence_/zero-{i:04d}" for i in range(n)), speaker_ids=("",) * n,
        protocol=f"v2-12-tf-pipeline{BRIDGE_ITEMS_MARK}",
    )


def _frames(path: Path) -> int:
    import soundfile as sf

    try:
        return int(sf.info(str(path)).frames)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BadInputError(f"cannot read noise recording {path}: {err}") from err


def _stat_files(root: Path, items: list[_Item]) -> list[tuple[str, int, int]]:
    rels = {i.uid if i.path is not None else i.crop[0] for i in items}
    out = []
    for rel in rels:
        st = os.stat(root / rel)
        out.append((rel, st.st_size, st.st_mtime_ns))
    return out


@dataclass
class _Counts:
    resampled: int = 0
    stereo: int = 0
    padded: int = 0
    cut: int = 0
    skipped: int = 0


def _load_clip(path: Path, counts: _Counts) -> np.ndarray:
    x, rate = read_audio_raw(path)
    if x.ndim == 2:
        counts.stereo += 1
        x = x.mean(axis=1, dtype=np.float32)
    if rate != SAMPLE_RATE:
        counts.resampled += 1
        x = resample(x, rate, SAMPLE_RATE)
    return x


def _decode_workers(n_items: int) -> int:
    """Threads that decode a clip set: libsndfile decodes without holding the GIL, so the CPUs the process may
    use (at most 16) decode side by side; one for a handful of clips."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(16, cpus, n_items // 64))


def _decode(root: Path, items: list[_Item], label_names: tuple[str, ...], protocol: str, on_bad_file: str) -> ClipSet:
    counts = _Counts()
    audio = np.zeros((len(items), CLIP_SAMPLES), dtype=np.float32)
    keep = np.zeros(len(items), dtype=bool)
    noise_cache: dict[str, np.ndarray] = {}
    for n, item in enumerate(items):  # silence crops share their recordings: decoded once, in order
        if item.crop is not None:
            rel, offset = item.crop
            if rel not in noise_cache:
                noise_cache[rel] = _load_clip(root / rel, _Counts())
            audio[n] = fix_length(noise_cache[rel][offset:offset + CLIP_SAMPLES], CLIP_SAMPLES) * SILENCE_GAIN
            keep[n] = True

    def one(n: int) -> tuple[int, _Counts, BaseException | None]:
        """Clip n into its row; its own counts (threads never share one), or the error it raised."""
        own = _Counts()
        try:
            x = _load_clip(items[n].path, own)
        except KwsbenchError as err:
            return n, own, err
        own.padded += x.shape[0] < CLIP_SAMPLES
        own.cut += x.shape[0] > CLIP_SAMPLES
        audio[n] = fix_length(x, CLIP_SAMPLES)
        keep[n] = True
        return n, own, None

    files = [n for n, item in enumerate(items) if item.crop is None]
    with ThreadPoolExecutor(_decode_workers(len(files))) as pool:
        done = list(pool.map(one, files))  # in file order: the first bad file is the one reported
    for _n, own, err in done:
        if err is not None:
            if on_bad_file == "error":
                raise err
            counts.skipped += 1
            continue
        for name in ("resampled", "stereo", "padded", "cut"):
            setattr(counts, name, getattr(counts, name) + getattr(own, name))
    if counts.resampled:
        warnings.warn(f"{counts.resampled} clips in {root} were not at 16 kHz and were resampled", stacklevel=3)
    if counts.cut:
        warnings.warn(f"{counts.cut} clips in {root} were longer than one second and were cut to their first "
                      f"{CLIP_SAMPLES} samples", stacklevel=3)
    if counts.skipped:
        warnings.warn(f"{counts.skipped} clips in {root} could not be read and were left out (--on-bad-file skip)",
                      stacklevel=3)
    if counts.stereo:
        warnings.warn(f"{counts.stereo} clips in {root} had several channels and were mixed to mono", stacklevel=3)
    kept = [it for it, k in zip(items, keep, strict=True) if k]
    if not kept:
        raise DatasetError(f"no readable clips in {root} (skipped {counts.skipped})")
    return ClipSet(
        audio=audio[keep],
        labels=np.array([it.label for it in kept], dtype=np.int64),
        label_names=tuple(label_names),
        utterance_ids=tuple(it.uid for it in kept),
        speaker_ids=tuple(it.speaker for it in kept),
        protocol=protocol,
        skipped=counts.skipped,
        meta={"resampled": counts.resampled, "stereo": counts.stereo, "padded": counts.padded, "cut": counts.cut},
    )
