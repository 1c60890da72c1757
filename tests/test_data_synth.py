"""The embedded synthetic keyword set: deterministic bytes, canonical layout, speakers, default set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kwsbench.cli import main
from kwsbench.data import synth
from kwsbench.data.clipset import LABELS_12
from kwsbench.data.speech_commands import load_clipset
from kwsbench.errors import BadInputError


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    # the second run happens after this process has loaded torch and synthesised other words;
    # the output must still be byte-identical
    a = synth.generate(tmp_path / "a", seed=3, per_class=3)
    b = synth.generate(tmp_path / "b", seed=3, per_class=3, fmt="flac")
    c = synth.generate(tmp_path / "c", seed=4, per_class=3)
    ta, tb, tc = tree(a), tree(b), tree(c)
    assert len(ta) == 12 * 3 + 1  # 36 clips + README
    assert ta == tb
    shared = set(ta) & set(tc)
    assert sum(ta[k] != tc[k] for k in shared) > 0 or set(ta) != set(tc)


def test_synth_set_loads_as_canonical_with_speakers(tmp_path):
    out = synth.generate(tmp_path / "s", seed=0, per_class=4, fmt="wav")
    cs = load_clipset(out, use_cache=False)
    assert cs.protocol == "v2-12-official" and len(cs) == 48
    assert set(cs.class_counts().values()) == {4}
    speech = cs.labels != LABELS_12.index("silence")
    speakers = [s for s, sp in zip(cs.speaker_ids, speech, strict=True) if sp]
    assert all(len(s) == 8 and int(s, 16) >= 0 for s in speakers)
    assert len(set(speakers)) > 10  # many voices, not one
    assert all(s == "" for s, sp in zip(cs.speaker_ids, speech, strict=True) if not sp)
    rms = np.sqrt(np.mean(cs.audio**2, axis=1))
    assert np.all(rms[speech] > 1e-3)  # every keyword clip holds audible speech
    assert np.all(np.abs(cs.audio) < 1.0)
    unknown_words = {u.split("/")[1].split("_")[0] for u in cs.utterance_ids if u.startswith("_unknown_/")}
    assert unknown_words <= set(synth.UNKNOWN_WORDS)


def test_speaker_pool_is_deterministic_and_distinct():
    a, b = synth.make_speakers(7, 20), synth.make_speakers(7, 20)
    assert a == b and len({s.id for s in a}) == 20
    assert synth.make_speakers(8, 20) != a


def test_generate_refuses_nonempty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "old.flac").write_bytes(b"")
    with pytest.raises(BadInputError, match="not empty"):
        synth.generate(tmp_path / "x", per_class=1)


def test_cli_synth_then_info(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--seed", "5", "--per-class", "2"]) == 0
    assert len(list(out.rglob("*.flac"))) == 24
    assert main(["data", "info", str(out)]) == 0
    assert "v2-12-official" in capsys.readouterr().out


def test_cli_synth_of_another_size_goes_to_the_working_directory_and_says_where(tmp_path, monkeypatch, capsys):
    """Not the embedded set, so not into the data home (where it would pass for it); the help said 'the default
    set under the data home' and the command printed a relative path."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "synth", "--per-class", "1"]) == 0
    assert len(list((tmp_path / "synth-seed0").rglob("*.flac"))) == 12 and not (tmp_path / "home").exists()
    assert f"synthetic keyword set in {tmp_path / 'synth-seed0'} (" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    assert "./synth-seed<SEED> in the working directory" in " ".join(capsys.readouterr().out.split())


def test_ensure_default_dataset_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    monkeypatch.setattr(synth, "DEFAULT_PER_CLASS", 2)  # keep the test fast; the path logic is the same
    path = synth.ensure_default_dataset(seed=0)
    assert path == tmp_path / "home" / "synth"
    before = tree(path)
    assert len([k for k in before if k.endswith(".flac")]) == 24
    stamp_mtime = (path / ".kwsbench-synth").stat().st_mtime_ns
    assert synth.ensure_default_dataset(seed=0) == path
    assert (path / ".kwsbench-synth").stat().st_mtime_ns == stamp_mtime  # not regenerated
    assert [p.name for p in path.parent.iterdir()] == ["synth"]  # no temporary folder left behind
    assert tree(path) == before


def test_a_set_another_process_finished_meanwhile_is_kept_not_replaced(tmp_path, monkeypatch):
    """Two torchrun ranks on a fresh home both synthesise; the later one must not delete the set the earlier
    one already finished (and may be reading)."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    monkeypatch.setattr(synth, "DEFAULT_PER_CLASS", 1)
    real_generate = synth.generate

    def generate_while_another_rank_finishes(out, **kw):
        real_generate(out, **kw)
        other = tmp_path / "home" / "synth"  # the other rank's set lands while this one is still writing
        real_generate(other, **kw)
        (other / "marker").write_text("the other rank's files")
        (other / ".kwsbench-synth").write_text(
            f"version={synth.SYNTH_VERSION} seed=0 per_class={synth.DEFAULT_PER_CLASS}\n")

    monkeypatch.setattr(synth, "generate", generate_while_another_rank_finishes)
    path = synth.ensure_default_dataset(seed=0)
    assert (path / "marker").is_file()  # kept, not replaced under the other rank
    assert [p.name for p in path.parent.iterdir()] == ["synth"]  # this rank's copy removed
