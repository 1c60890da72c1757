"""Training: recipes validate, a short run learns and writes loadable checkpoints, resume continues."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kwsbench.data.subsets import speaker_split
from kwsbench.errors import BadInputError
from kwsbench.models.registry import ModelCard
from kwsbench.train.loop import (
    TrainConfig,
    lr_factor,
    orthogonality_penalty,
    param_groups,
    read_checkpoint,
    read_history,
    time_shift,
    train,
)
from kwsbench.train.recipes import list_recipes, load_recipe, recipe_from_dict


class TinyKws(nn.Module):
    """Frame energies -> a linear layer: small and BatchNorm-free, so gradients average exactly across ranks."""

    def __init__(self, num_classes: int = 12) -> None:
        super().__init__()
        self.frontend = nn.Identity()
        self.proj = nn.Linear(40, 32)
        self.decoder = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.reshape(x.shape[0], 40, -1)
        feats = self.frontend(torch.log1p(100 * frames.square().mean(-1)).unsqueeze(1)).squeeze(1)
        return self.decoder(torch.relu(self.proj(feats)))


TINY = ModelCard(name="tiny-test", family="test", builder=TinyKws, kwargs={"num_classes": 12})

SMALL_RECIPE = {
    "name": "test", "source": "tests", "optimizer": "adamw", "lr": 0.01, "epochs": 2, "batch_size": 8,
    "warmup_steps": 2, "min_lr_ratio": 0.1, "label_smoothing": 0.1, "grad_clip": 1.0,
    "split": {"val_fraction": 0.25},
    "augment": {"time_shift_ms": 20, "gain": [0.9, 1.1], "gaussian_noise": {"p": 0.5, "sigma": 0.002}},
}


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A few dozen synthetic clips (4 per class) in the canonical layout."""
    from kwsbench.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "set", seed=3, per_class=4)


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    recipe = recipe_from_dict({**SMALL_RECIPE, **kw.pop("recipe", {})})
    return TrainConfig(model="tiny-test", recipe=recipe, data_dir=str(data), out=out, show_progress=False, **kw)


# -- recipes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["s-edge", "s-edge-augmented", "s-edge-shift-gain", "nc-ssm", "bc-resnet", "ds-cnn",
                                  "kwt", "synth", "synth-kwt"])
def test_packaged_recipes_validate(name):
    assert name in list_recipes()
    r = load_recipe(name)
    assert r.name == name and r.lr > 0 and r.epochs >= 1


def test_train_help_lists_every_packaged_recipe(capsys):
    # the help's list was written by hand and missed four recipes (s-edge-shift-gain among them)
    from kwsbench.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # rich-argparse wraps lines
    assert len(list_recipes()) >= 10
    for name in list_recipes():
        assert f"{name}," in help_text or f"{name})" in help_text, name


def test_paper_values_are_carried():
    s_edge, nc, bc = load_recipe("s-edge"), load_recipe("nc-ssm"), load_recipe("bc-resnet")
    assert (s_edge.lr, s_edge.epochs, s_edge.batch_size, s_edge.warmup_steps) == (0.002, 40, 16, 100)
    assert s_edge.orthogonality.weight == 0.1 and s_edge.augment.rzoh
    assert (nc.optimizer, nc.lr, nc.label_smoothing) == ("adamw", 0.003, 0.1)
    assert (bc.optimizer, bc.lr, bc.epochs, bc.warmup_epochs) == ("sgd", 0.1, 200, 5)


@pytest.mark.parametrize("bad, where", [
    ({"learning_rate": 0.1}, "learning_rate"),
    ({"lr": "fast"}, "lr"),
    ({"epochs": 2.5}, "epochs"),
    ({"augment": {"gain": [0.9]}}, "augment.gain"),
    ({"augment": {"timeshift_ms": 10}}, "augment.timeshift_ms"),
    ({"param_groups": [{"name": "x", "contains": "B"}]}, "param_groups[0].contains"),
])
def test_bad_recipe_key_names_file_and_key(tmp_path, bad, where):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SMALL_RECIPE, **bad}))
    with pytest.raises(BadInputError) as err:
        load_recipe(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_missing_required_key_and_unknown_recipe(tmp_path):
    with pytest.raises(BadInputError, match="missing required key lr"):
        recipe_from_dict({k: v for k, v in SMALL_RECIPE.items() if k != "lr"})
    with pytest.raises(BadInputError, match="optimizer"):
        recipe_from_dict({**SMALL_RECIPE, "optimizer": "lamb"})
    with pytest.raises(BadInputError, match="packaged recipe"):
        load_recipe("no-such-recipe")


def test_recipe_metadata_keeps_its_flat_val_fraction_and_empty_sections_mean_defaults():
    meta = recipe_from_dict(SMALL_RECIPE).to_dict()  # the shape the checkpoints already written hold
    assert meta["val_fraction"] == 0.25 and "split" not in meta
    assert list(meta)[-2:] == ["val_fraction", "augment"]
    empty = recipe_from_dict({**SMALL_RECIPE, "split": None, "augment": None})
    assert empty.val_fraction == 0.2 and not empty.augment.rzoh and empty.augment.gain is None


# -- pieces ------------------------------------------------------------------------------------

def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, 100, 10, 0.1) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[100] == pytest.approx(0.1) and f[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)


def test_param_groups_by_leaf_name():
    recipe = load_recipe("s-edge")

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.B = nn.Parameter(torch.zeros(2))
            self.Lambda = nn.Parameter(torch.zeros(2))
            self.decoder = nn.Linear(2, 2)

    groups = {g["name"]: g for g in param_groups(M(), recipe)}
    assert len(groups["ssm"]["params"]) == 2 and groups["ssm"]["weight_decay"] == 0.0
    assert groups["default"]["lr"] == pytest.approx(4 * 0.002) and groups["default"]["weight_decay"] == 0.04


def test_time_shift_moves_and_zero_fills():
    x = torch.arange(1, 11, dtype=torch.float32).repeat(2, 1)
    y = time_shift(x, torch.tensor([3, -2]))
    assert y[0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert y[1].tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 0, 0]


def test_orthogonality_penalty_zero_for_orthogonal_rows():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    assert float(orthogonality_penalty(q)) < 1e-6
    assert float(orthogonality_penalty(torch.ones(3, 4))) > 1.0


def test_speaker_split_is_disjoint(tiny_synth):
    from kwsbench.data.speech_commands import load_clipset

    cs = load_clipset(tiny_synth)
    tr, va = speaker_split(cs, 0.25, seed=0)
    assert len(tr) + len(va) == len(cs)
    assert not ({s for s in tr.speaker_ids if s} & {s for s in va.speaker_ids if s})
    assert set(tr.utterance_ids).isdisjoint(va.utterance_ids)


# -- the loop ----------------------------------------------------------------------------------

def test_short_run_learns_and_writes_loadable_checkpoint(tiny_synth, tmp_path):
    state_before = torch.random.get_rng_state()
    res = train(_config(tiny_synth, tmp_path / "run", recipe={"epochs": 4}), card=TINY)
    assert torch.equal(state_before, torch.random.get_rng_state())  # the global RNG is left alone
    losses = [r.train_loss for r in res.history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    saved = torch.load(res.best_path, map_location="cpu", weights_only=True)
    meta = saved["metadata"]
    assert meta["model"] == "tiny-test" and meta["recipe"]["name"] == "test"
    assert meta["epoch"] == res.best_epoch and meta["val_acc"] == pytest.approx(res.best_val_acc)
    assert len(meta["train_fingerprint"]) == 64 and "git_commit" in meta
    from kwsbench.checkpoints import load_model

    loaded = load_model(TINY, checkpoint=res.best_path)  # the project's strict, sha-checked loader
    assert not loaded.module.training and loaded.labels == tuple(meta["labels"])
    rows = list(csv.DictReader(open(res.history_path)))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_resume_continues_from_last_epoch(tiny_synth, tmp_path):
    full = train(_config(tiny_synth, tmp_path / "full", epochs=3), card=TINY)
    part = _config(tiny_synth, tmp_path / "part", epochs=3, stop_after=2)  # "interrupted" after epoch 2
    train(part, card=TINY)
    assert read_checkpoint(tmp_path / "part" / "last.pt")["metadata"]["epoch"] == 2
    part.stop_after, part.resume = None, True
    resumed = train(part, card=TINY)
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    assert [r.epoch for r in read_history(tmp_path / "part" / "history.csv")] == [1, 2, 3]
    a = read_checkpoint(tmp_path / "full" / "last.pt")["model_state_dict"]
    b = read_checkpoint(tmp_path / "part" / "last.pt")["model_state_dict"]
    # same seed, interrupted after epoch 2 and resumed: the same weights as the uninterrupted run
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    np.testing.assert_allclose(full.history[-1].val_acc, resumed.history[-1].val_acc)


class DropoutKws(TinyKws):
    """TinyKws with dropout on its features: the one draw training takes from torch's global generator."""

    def __init__(self, num_classes: int = 12) -> None:
        super().__init__(num_classes)
        self.frontend = nn.Dropout(0.3)


def test_training_does_not_depend_on_the_callers_global_generator(tiny_synth, tmp_path):
    # initial weights from the build's own generator, dropout from the global one seeded per epoch inside a fork
    card = ModelCard(name="tiny-dropout", family="test", builder=DropoutKws, kwargs={"num_classes": 12})
    weights = []
    for global_seed in (1, 2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            before = torch.random.get_rng_state()
            train(_config(tiny_synth, tmp_path / str(global_seed), epochs=2), card=card)
            assert torch.equal(before, torch.random.get_rng_state())
        weights.append(read_checkpoint(tmp_path / str(global_seed) / "last.pt")["model_state_dict"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_resume_refuses_other_settings(tiny_synth, tmp_path):
    train(_config(tiny_synth, tmp_path / "r", epochs=1), card=TINY)
    other = _config(tiny_synth, tmp_path / "r", epochs=2, seed=5, resume=True)
    with pytest.raises(BadInputError, match="seed"):
        train(other, card=TINY)


def test_specaugment_hook_masks_only_in_training(tiny_synth, tmp_path):
    sa = {"module": "frontend", "freq_masks": 1, "freq_width": 5, "time_masks": 0, "time_width": 0}
    res = train(_config(tiny_synth, tmp_path / "sa", epochs=1, recipe={"augment": {"specaugment": sa}}), card=TINY)
    assert res.best_path.is_file()


class FixedHeadKws(TinyKws):
    def __init__(self) -> None:  # no num_classes: the head cannot be resized
        super().__init__(num_classes=35)


def test_fixed_head_class_count_mismatch_is_a_user_error(tiny_synth, tmp_path):
    card35 = ModelCard(name="tiny-35", family="test", builder=FixedHeadKws, num_classes=35)
    with pytest.raises(BadInputError, match="fixed 35-class head"):
        train(_config(tiny_synth, tmp_path / "x", epochs=1), card=card35)


def test_sizable_head_follows_the_data_and_the_checkpoint(tiny_synth, tmp_path, monkeypatch):
    """A 35-class card trained on 12-class data: 12-class head, labels recorded, and loaded back with 12."""
    from kwsbench.checkpoints import get_manifest, load_model
    from kwsbench.train.loop import publish

    monkeypatch.setenv("KWSBENCH_MANIFESTS", str(tmp_path / "manifests"))
    card35 = ModelCard(name="tiny-35", family="test", builder=TinyKws, kwargs={"num_classes": 35}, num_classes=35)
    res = train(_config(tiny_synth, tmp_path / "h", epochs=1), card=card35)
    saved = read_checkpoint(res.best_path)
    assert saved["model_state_dict"]["decoder.weight"].shape[0] == 12
    assert len(saved["metadata"]["labels"]) == 12
    entry = publish(res, "heads")
    assert get_manifest("heads").entry(entry.id).labels == tuple(saved["metadata"]["labels"])
    for ref in (f"heads:{entry.id}", res.best_path):  # the manifest says, or the file's own metadata does
        loaded = load_model(card35, checkpoint=ref)
        assert loaded.module(torch.zeros(2, 16000)).shape == (2, 12)
        assert loaded.labels == tuple(saved["metadata"]["labels"])


def test_publish_final_records_the_last_epoch(tiny_synth, tmp_path, monkeypatch):
    from kwsbench.checkpoints import get_manifest
    from kwsbench.train.loop import publish

    monkeypatch.setenv("KWSBENCH_MANIFESTS", str(tmp_path / "manifests"))
    res = train(_config(tiny_synth, tmp_path / "f", epochs=3), card=TINY)
    entry = publish(res, "finals", final=True)
    got = read_checkpoint(get_manifest("finals").file_path(entry))
    last = read_checkpoint(res.last_path)
    assert "optimizer_state_dict" not in got and got["metadata"]["epoch"] == 3 and entry.epoch == 3
    assert all(torch.equal(got["model_state_dict"][k], v) for k, v in last["model_state_dict"].items())


DDP_SCRIPT = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import TINY, _config
from kwsbench.train.loop import train
cfg = _config(Path({data!r}), Path({out!r}), epochs=2)
train(cfg, card=TINY)
"""


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_single_process(tiny_synth, tmp_path):
    """Two ranks each take half of every global batch; DDP averages their gradients, which equals the
    single-process gradient of the whole batch (mean loss, equal halves, no BatchNorm, no dropout)."""
    single = train(_config(tiny_synth, tmp_path / "one", epochs=2, recipe={"batch_size": 8}), card=TINY)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), data=str(tiny_synth),
                                        out=str(tmp_path / "two")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = read_checkpoint(single.last_path)["model_state_dict"]
    b = read_checkpoint(tmp_path / "two" / "last.pt")["model_state_dict"]
    assert read_checkpoint(tmp_path / "two" / "last.pt")["metadata"]["world_size"] == 2
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_publish_records_a_loadable_project_checkpoint(tiny_synth, tmp_path, monkeypatch):
    from kwsbench.checkpoints import get_manifest, load_model
    from kwsbench.train.loop import publish

    monkeypatch.setenv("KWSBENCH_MANIFESTS", str(tmp_path / "manifests"))
    res = train(_config(tiny_synth, tmp_path / "p", epochs=1), card=TINY)
    entry = publish(res, "synth-test")
    manifest = get_manifest("synth-test")
    assert manifest.location == "project" and manifest.entry("tiny-test.pt").val_acc == pytest.approx(
        res.best_val_acc, abs=1e-3)
    loaded = load_model(TINY, checkpoint=f"synth-test:{entry.id}")  # sha256 verified against the manifest
    assert loaded.sha256 == entry.sha256


@pytest.mark.parametrize("typed, recorded", [
    ("kwsbench train m --epochs 40 --out /tmp/x/m --quiet --publish synth",
     "kwsbench train m --epochs 40 --publish synth"),
    ("kwsbench train m --out=/tmp/x --resume --seed 3", "kwsbench train m --seed 3"),
    ("kwsbench train m --device cuda", "kwsbench train m --device cuda"),
])
def test_reproducible_command_drops_local_options(typed, recorded):
    from kwsbench.train.loop import reproducible_command

    assert reproducible_command(typed) == recorded


def test_publish_records_the_command_without_private_paths(tiny_synth, tmp_path, monkeypatch):
    import yaml

    from kwsbench.train.loop import publish

    monkeypatch.setenv("KWSBENCH_MANIFESTS", str(tmp_path / "manifests"))
    cfg = _config(tiny_synth, tmp_path / "p", epochs=1)
    cfg.command = f"kwsbench train tiny-test --epochs 1 --out {tmp_path / 'p'} --quiet --publish synth-test"
    publish(train(cfg, card=TINY), "synth-test")
    raw = yaml.safe_load((tmp_path / "manifests" / "synth-test.yaml").read_text())
    assert raw["files"][0]["command"] == "kwsbench train tiny-test --epochs 1 --publish synth-test"


def test_git_commit_outside_a_checkout_is_empty(tmp_path, monkeypatch):
    import kwsbench.provenance as tr

    monkeypatch.setattr(tr, "PROJECT_ROOT", tmp_path)  # not a git checkout: no commit to record
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv("KWSBENCH_GIT_COMMIT", raising=False)
    assert tr.git_commit() == ""
    monkeypatch.setenv("KWSBENCH_GIT_COMMIT", "abc123")  # a copy that says which commit it was made from
    assert tr.git_commit() == "abc123"


@pytest.mark.parametrize("manifest", ["synth", "gsc-mini"])
def test_shipped_manifest_commands_are_reproducible(manifest):
    import yaml

    from kwsbench.paths import PROJECT_ROOT

    raw = yaml.safe_load((PROJECT_ROOT / "checkpoints" / f"{manifest}.yaml").read_text())
    for entry in raw["files"]:
        cmd = entry["command"]
        assert cmd.startswith(f"kwsbench train {entry['model']} ") and "/tmp" not in cmd and "--out" not in cmd, cmd
        assert (PROJECT_ROOT / "checkpoints" / manifest / entry["id"]).stat().st_size == entry["size"]


def test_orthogonality_term_on_a_missing_parameter_is_a_user_error(tiny_synth, tmp_path):
    """The S-Edge recipe once named `decoder.weight`, which the model does not have, and trained without the term."""
    cfg = _config(tiny_synth, tmp_path / "o", epochs=1, recipe={"orthogonality": {"param": "no.such", "weight": 0.1}})
    with pytest.raises(BadInputError, match="no.such"):
        train(cfg, card=TINY)


@pytest.mark.parametrize("recipe", ["s-edge", "s-edge-high-lr", "s-edge-augmented", "s-edge-shift-gain"])
def test_s_edge_recipes_name_parameters_every_size_has(recipe):
    from kwsbench.models.sedge import CONFIGS, build_sedge

    rec = load_recipe(recipe)
    for size in CONFIGS:
        names = dict(build_sedge(size, num_classes=12).named_parameters())
        assert rec.orthogonality.param in names, (recipe, size)


def test_training_says_what_it_trains_on_before_the_first_epoch(tiny_synth, tmp_path, capsys):
    # a new user saw only "training step: eager (not on CUDA)" and then a validation accuracy of 0.00 %, with no
    # word of the data, the recipe or how few clips --max-per-class had left
    cfg = dataclasses.replace(_config(tiny_synth, tmp_path / "say", epochs=1), show_progress=True)
    train(cfg, card=TINY)
    said = " ".join(capsys.readouterr().err.split())  # progress goes to stderr; rich may wrap the line
    first = said[:said.index("validation clips") + len("validation clips; training step: eager")]
    assert first.startswith("training tiny-test with recipe test for 1 epochs on ") and str(tiny_synth) in first
    assert "(v2-12-official" in first and "36 training / 12 validation clips" in first, first
    assert "training step: eager" in first


def test_training_messages_are_whole_lines_when_piped(tiny_synth, tmp_path, capsys):
    """Rich wrapped each message at 80 columns in a piped log, cutting the data path in two."""
    cfg = dataclasses.replace(_config(tiny_synth, tmp_path / "lines", epochs=1), show_progress=True)
    train(cfg, card=TINY)
    lines = capsys.readouterr().err.splitlines()
    first = next(line for line in lines if line.startswith("training tiny-test"))
    assert "36 training / 12 validation clips" in first and str(tiny_synth) in first, lines[:3]
    epoch = next(line for line in lines if line.startswith("tiny-test epoch 1/1"))
    assert " | lr " in epoch, lines


def test_stop_after_flag_reaches_the_loop_and_is_checked(monkeypatch):
    import kwsbench.train.loop as loop
    from kwsbench.cli import main
    from kwsbench.train.loop import TrainResult

    seen = {}

    def fake_train(cfg, card=None):
        seen["cfg"] = cfg
        return TrainResult(Path("best.pt"), Path("last.pt"), Path("history.csv"), 2, 50.0)

    monkeypatch.setattr(loop, "train", fake_train)
    assert main(["train", "ds-cnn-s", "--epochs", "5", "--stop-after", "2", "--quiet"]) == 0
    assert seen["cfg"].stop_after == 2 and seen["cfg"].epochs == 5
    assert main(["train", "ds-cnn-s", "--stop-after", "0", "--quiet"]) == 5


def test_ctrl_c_says_what_a_training_kept_and_how_to_continue(monkeypatch, tmp_path, capsys):
    """The CLI's generic line ('results already stored are kept') speaks of a run's cells; a training keeps
    last.pt after each epoch, or nothing before the first. --resume with no last.pt says it starts afresh."""
    import kwsbench.train.loop as loop
    from kwsbench.cli import main
    from kwsbench.errors import EXIT_INTERRUPTED

    def interrupted(cfg, card=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    out = tmp_path / "t"
    assert main(["train", "ds-cnn-s", "--out", str(out), "--quiet"]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "before the first epoch finished" in err and "results already stored" not in err, err
    (out / "last.pt").write_bytes(b"")  # train made the folder before training
    assert main(["train", "ds-cnn-s", "--out", str(out), "--quiet"]) == EXIT_INTERRUPTED
    assert f"{out / 'last.pt'} holds the last finished epoch" in capsys.readouterr().err
    (out / "last.pt").unlink()
    assert main(["train", "ds-cnn-s", "--out", str(out), "--quiet", "--resume"]) == EXIT_INTERRUPTED
    assert "--resume: no" in capsys.readouterr().err
