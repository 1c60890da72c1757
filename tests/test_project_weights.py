"""The weights the project ships (checkpoints/synth, checkpoints/gsc-mini) and how a run picks them."""

from __future__ import annotations

import pytest
import torch

from kwsbench.checkpoints import CheckpointEntry, get_manifest, load_model
from kwsbench.data.clipset import LABELS_12
from kwsbench.errors import CheckpointError
from kwsbench.models.registry import all_cards
from kwsbench.run.plan import Plan, embedded_defaults

SHIPPED = ("synth", "gsc-mini")


def _entries(name):
    return [(name, e) for e in get_manifest(name).entries]


@pytest.mark.slow
@pytest.mark.parametrize("manifest, entry", [pe for m in SHIPPED for pe in _entries(m)],
                         ids=lambda v: getattr(v, "id", v))
def test_every_shipped_checkpoint_loads_strictly_as_a_12_class_model(manifest, entry):
    loaded = load_model(entry.model, checkpoint=f"{manifest}:{entry.id}")  # sha256 checked, strict
    assert loaded.labels == LABELS_12 and loaded.sha256 == entry.sha256
    with torch.inference_mode():
        assert loaded.module(torch.zeros(1, 16000)).shape == (1, 12)


# Cards whose synthetic-set and gsc-mini weights are trained and measured but not shipped (kwt-2: 10.7 MB,
# kwt-3: 22.5 MB in fp32): their manifests carry an `unshipped` record (accuracy, recipe, command, sha256).
UNSHIPPED = {"kwt-2", "kwt-3"}


def test_every_registry_model_has_synth_weights_or_an_unshipped_record():
    synth = get_manifest("synth")
    have = {e.model for e in synth.entries}
    assert have == {c.name for c in all_cards()} - UNSHIPPED
    assert {u.model for u in synth.unshipped} == UNSHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_unshipped_records_say_how_to_make_the_file(name):
    m = get_manifest(name)
    protocols = {e.protocol for e in m.entries}
    for u in m.unshipped:
        assert u.command.startswith(f"kwsbench train {u.model} ") and "/tmp" not in u.command, u.command
        assert "--out" not in u.command and "--publish" not in u.command  # nothing is published
        assert u.protocol in protocols and 1 <= u.epoch <= u.epochs and u.val_acc > 100 / 12 + 10
        assert u.size > 8_000_000 and not m.file_path(CheckpointEntry(f"{u.model}.pt", u.model, u.sha256)).exists()
        assert u.schedule_vs_paper and "not shipped" in u.note


def test_an_unshipped_record_with_a_bad_field_is_refused(tmp_path):
    import yaml

    from kwsbench.checkpoints import read_manifest
    from kwsbench.errors import BadInputError

    raw = yaml.safe_load(get_manifest("gsc-mini").path.read_text())
    raw["unshipped"][0]["sha256"] = "not-hex"
    (tmp_path / "gsc-mini.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(BadInputError, match="unshipped run 1.*sha256"):
        read_manifest(tmp_path / "gsc-mini.yaml")


def test_gsc_mini_covers_the_ssm_family_and_the_official_cnns():
    have = {e.model for e in get_manifest("gsc-mini").entries}
    ssm = {c.name for c in all_cards() if c.family in ("s-edge", "s4", "s5", "liquid-s4", "mamba", "centaurus")}
    assert ssm | {"bc-resnet-1", "ds-cnn-s-hello-edge", "kwt-1", "vjepa2-audio-kws"} <= have
    assert {u.model for u in get_manifest("gsc-mini").unshipped} == UNSHIPPED
    assert {e.protocol for e in get_manifest("gsc-mini").entries} == {"v2-12-official-mini"}


def test_main_job_takes_synth_weights_and_leaves_out_what_did_not_learn_or_is_slow_on_a_cpu(monkeypatch):
    import dataclasses

    import kwsbench.run.plan as plan_mod

    # the manifest as shipped, with one entry flagged as not learned (no shipped entry is today)
    entries = [dataclasses.replace(e, learned=False) if e.model == "bc-resnet-2" else e
               for e in get_manifest("synth").entries]
    monkeypatch.setattr(plan_mod, "_weight_entries", lambda name: entries)
    on_gpu, left_gpu = embedded_defaults(Plan(device="cuda"))
    assert on_gpu.models == [e.model for e in entries if e.learned] and on_gpu.weights == "synth"
    assert all(on_gpu.checkpoints[e.model] == f"synth:{e.id}" for e in entries)
    assert [(x.model, "did not learn" in x.reason) for x in left_gpu] == [("bc-resnet-2", True)]
    on_cpu, left_cpu = embedded_defaults(Plan())
    quick, left_quick = embedded_defaults(Plan(), quick=True)
    assert on_cpu.models == quick.models == [e.model for e in entries if e.quick and e.learned]
    assert {x.model for x in left_cpu} == {e.model for e in entries if not (e.quick and e.learned)}
    assert left_quick == left_cpu
    named, left = embedded_defaults(Plan(models=["bc-resnet-2"], weights="synth"))  # named: it runs
    assert named.models == ["bc-resnet-2"] and left == []


def test_an_entry_whose_note_says_it_did_not_learn_is_flagged():
    for e in get_manifest("synth").entries:
        assert "DID NOT LEARN" not in e.note or not e.learned, e.model


def test_weights_flag_maps_the_named_models_and_keeps_explicit_checkpoints():
    plan, left = embedded_defaults(Plan(models=["s4d-kws", "ds-cnn-s"], data_dir="x", weights="gsc-mini",
                                        checkpoints={"ds-cnn-s": "own.pt"}))
    assert left == []
    assert plan.models == ["s4d-kws", "ds-cnn-s"]
    assert plan.checkpoints == {**{e.model: f"gsc-mini:{e.id}" for e in get_manifest("gsc-mini").entries},
                                "ds-cnn-s": "own.pt"}
    with pytest.raises(CheckpointError, match="no checkpoint manifest 'nope'"):
        embedded_defaults(Plan(weights="nope"))


def test_a_gsc_mini_checkpoint_on_its_own_test_layout_is_flagged():
    from kwsbench.checkpoints import trained_on_this_set

    ref = f"gsc-mini:{get_manifest('gsc-mini').entries[0].id}"
    assert "trained on a split of this test set" in trained_on_this_set(ref, "v2-12-official")
    assert trained_on_this_set(ref, "v2-12-all-unknown:test") == ""
    assert trained_on_this_set(f"synth:{get_manifest('synth').entries[0].id}", "synthetic-12") == ""
    assert trained_on_this_set(None, "v2-12-official") == ""
    assert trained_on_this_set("no-such-manifest:x.pt", "v2-12-official") == ""


# gsc-mini entries retrained for issue 21 record `val_check`: how many of the first validation clips the shipped
# file gets right, counted on a CPU when it was published (its val_acc was measured during training on a GPU).
CHECKED = {"s-edge-full.pt", "s-edge-naive-extra-large.pt", "s-edge-naive-large.pt", "s-edge-naive-medium.pt",
           "s-edge-naive-small.pt", "s-edge-large.pt", "s-edge-medium.pt", "s-edge-small.pt", "s-edge-tiny.pt",
           "centaurus-kws.pt", "kwt-1.pt", "vjepa2-audio-kws.pt"}


def _raw_entries(name):
    import yaml

    return {e["id"]: e for e in yaml.safe_load(get_manifest(name).path.read_text())["files"]}


@pytest.mark.slow
def test_retrained_gsc_mini_files_reproduce_their_validation_slice():
    import numpy as np
    from helpers import require_shared

    from kwsbench.train.loop import TrainConfig, load_training_data
    from kwsbench.train.recipes import load_recipe

    data = require_shared("data", "gsc_v2_test_dev")
    raw = _raw_entries("gsc-mini")
    assert CHECKED <= {i for i, e in raw.items() if "val_check" in e}
    _, val, protocol = load_training_data(TrainConfig("s4-kws", load_recipe("s-edge"), data_dir=str(data)))
    for file_id in sorted(CHECKED):
        entry, check = raw[file_id], raw[file_id]["val_check"]
        assert entry["val_fingerprint"] == val.fingerprint and entry["protocol"] == protocol
        assert entry["learned"] is True and abs(check["cpu_val_acc"] - entry["val_acc"]) < 1.0, file_id
        n = check["clips"]
        x = torch.from_numpy(np.ascontiguousarray(val.audio[:n], dtype=np.float32))
        model = load_model(entry["model"], checkpoint=f"gsc-mini:{file_id}").module.eval()
        with torch.inference_mode():
            correct = int((model(x).argmax(-1) == torch.from_numpy(val.labels[:n].astype(np.int64))).sum())
        assert correct == check["correct"], file_id
