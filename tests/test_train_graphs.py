"""The training step captured in a CUDA graph (kwsbench/train/graphed.py) takes the same steps as the eager one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kwsbench.models.registry import get_card
from kwsbench.models.sedge import build_sedge
from kwsbench.train import graphed as gs
from kwsbench.train.loop import TrainConfig, read_checkpoint, train
from kwsbench.train.recipes import load_recipe

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("size", ["naive-small", "tiny"])
def test_randomness_slots_give_the_eager_draws(size):
    """Dropout masks and RZOH holds read from the slots are the ones an eager step draws: same losses and
    gradients, step after step (the holds are made frequent so that some steps hold blocks of samples)."""
    eager, slotted = (build_sedge(size, num_classes=12, rzoh=True, seed=3).train() for _ in range(2))
    for model in (eager, slotted):
        for hold in model.rzoh:
            hold.p = 0.9
    x, y = torch.randn(4, 4000, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 3, 5, 11])
    holds = []
    for _ in range(4):
        loss_e = F.cross_entropy(eager(x), y)
        loss_e.backward()
        with slotted.randomness_slots(4, "cpu"):
            slotted.fill_randomness_slots()
            holds.append(slotted._slots[1].tolist())
            loss_s = F.cross_entropy(slotted(x), y)
        loss_s.backward()
        assert loss_e.item() == loss_s.item()
        for (name, a), b in zip(eager.named_parameters(), slotted.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7, msg=name)
    assert any(k > 1 for step in holds for k in step)  # some steps really held samples
    assert all(layer.mask_slot is None for layer in slotted.layers)  # outside the block: eager draws again


def test_checkpointed_optimiser_state_is_the_eager_form():
    model = build_sedge("tiny", num_classes=12)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for g in opt.param_groups:
        g["peak_lr"] = g["lr"]
    F.cross_entropy(model(torch.randn(2, 800)), torch.tensor([1, 2])).backward()
    opt.step()
    for g in opt.param_groups:  # what make_capturable leaves (its steps on the device are checked on a GPU)
        g["lr"], g["capturable"] = torch.tensor(5e-4), True
    saved = gs.portable_optimizer_state(opt)
    assert all(type(g["lr"]) is float and g["capturable"] is False for g in saved["param_groups"])
    assert saved["param_groups"][0]["lr"] == pytest.approx(5e-4)
    assert all(s["step"].device.type == "cpu" for s in saved["state"].values())
    fresh = torch.optim.AdamW(build_sedge("tiny", num_classes=12).parameters(), lr=1e-3)
    fresh.load_state_dict(saved)
    gs.set_lr(fresh, 0.5)
    assert fresh.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)  # the peak travels with the state


def test_cpu_training_says_why_it_is_eager(gsc_dev_dir, tmp_path, monkeypatch):
    import kwsbench.train.loop as loop

    seen = []

    def no_steps(*args):
        seen.append(args[1])  # the GraphedStep, or None
        return 0.0, 0.0, 0.0

    monkeypatch.setattr(loop, "_train_epoch", no_steps)
    cfg = _config(gsc_dev_dir, "cpu", epochs=1, out=tmp_path / "cpu", max_per_class=2)
    cfg.model = "s-edge-tiny"
    res = train(cfg, card=get_card("s-edge-tiny"))
    assert seen == [None]
    assert read_checkpoint(res.last_path)["metadata"]["training_step"] == "eager (not on CUDA)"


def test_s_edge_resumes_with_its_generators_where_they_stood(gsc_dev_dir, tmp_path):
    """S-Edge draws dropout masks and RZOH holds from generators seeded at build time: last.pt keeps their
    states, so a run stopped after epoch 1 and resumed takes the uninterrupted run's steps (it did not before:
    the resumed epoch drew the first epoch's masks again)."""
    import dataclasses

    card = get_card("s-edge-naive-small")
    recipe = dataclasses.replace(load_recipe("s-edge-high-lr"), batch_size=4)  # small steps for the CPU

    def config(out, **kw):
        return TrainConfig(model=card.name, recipe=recipe, data_dir=str(gsc_dev_dir), epochs=2, out=tmp_path / out,
                           max_per_class=1, show_progress=False, **kw)

    full = train(config("full"), card=card)
    part = config("part", stop_after=1)
    train(part, card=card)
    assert "generator_states" in read_checkpoint(part.out / "last.pt")
    part.stop_after, part.resume = None, True
    resumed = train(part, card=card)
    assert resumed.history[-1].train_loss == pytest.approx(full.history[-1].train_loss, rel=1e-6)
    a, b = (read_checkpoint(r.last_path)["model_state_dict"] for r in (full, resumed))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-7, msg=name)


def _config(data: Path, device: str, **kw) -> TrainConfig:
    recipe = load_recipe("s-edge-high-lr")  # AdamW groups, warm-up and cosine, orthogonality term, batch 16
    return TrainConfig(model="s-edge-naive-small", recipe=recipe, data_dir=str(data), device=device,
                       show_progress=False, **kw)


@cuda
@pytest.mark.parametrize("size", ["s-edge-naive-small", "s-edge-tiny"])
def test_graphed_training_takes_the_eager_steps(gsc_dev_dir, tmp_path, size):
    """Two epochs on 144 real clips (about 115 to train on: 3 eager warm-up steps, 11 replays, 2 short eager
    batches) against the same run launched op by op: same per-epoch losses and weights within float
    tolerance. A stale replayed input, dropout mask or learning rate (the warm-up schedule changes it every
    step) would move them far apart."""
    runs = {}
    for graphs in (False, True):
        cfg = _config(gsc_dev_dir, "cuda", epochs=2, out=tmp_path / str(graphs), cuda_graphs=graphs, max_per_class=12)
        cfg.model = size
        res = train(cfg, card=get_card(size))
        runs[graphs] = (res, read_checkpoint(res.last_path))
    (eager, eager_ck), (fast, fast_ck) = runs[False], runs[True]
    assert fast_ck["metadata"]["training_step"] == "CUDA graph"
    assert eager_ck["metadata"]["training_step"] == "eager (--no-cuda-graphs)"
    for a, b in zip(eager.history, fast.history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-3)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-3)
    init = dict(build_sedge(size.removeprefix("s-edge-"), num_classes=12).named_parameters())
    moved = 0.0
    for name, a in eager_ck["model_state_dict"].items():
        b = fast_ck["model_state_dict"][name]
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)
        if name in init:
            moved = max(moved, float((a - init[name].detach()).abs().max()))
    assert moved > 1e-2  # the steps really changed the weights (100x the tolerance)


@cuda
def test_graphed_training_resumes_like_an_uninterrupted_run(gsc_dev_dir, tmp_path):
    """The checkpointed optimiser state (eager form) goes back onto the device for the captured step."""
    card = get_card("s-edge-naive-small")
    full = train(_config(gsc_dev_dir, "cuda", epochs=3, out=tmp_path / "full", max_per_class=12), card=card)
    part = _config(gsc_dev_dir, "cuda", epochs=3, out=tmp_path / "part", stop_after=2, max_per_class=12)
    train(part, card=card)
    part.stop_after, part.resume = None, True
    resumed = train(part, card=card)
    assert resumed.history[-1].train_loss == pytest.approx(full.history[-1].train_loss, rel=1e-3)
    a = read_checkpoint(full.last_path)["model_state_dict"]
    b = read_checkpoint(resumed.last_path)["model_state_dict"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("name", ["s-edge-augmented", "s-edge-shift-gain"])
def test_augmented_s_edge_recipes_are_the_paper_recipe_plus_augmentation(name):
    """The one deviation of these recipes from the paper's Default recipe is their `augment` section."""
    import dataclasses

    paper, augmented = load_recipe("s-edge"), load_recipe(name)
    differs = {f.name for f in dataclasses.fields(paper) if getattr(paper, f.name) != getattr(augmented, f.name)}
    assert differs == {"name", "source", "augment"}
    a = augmented.augment
    assert a.rzoh and a.time_shift_ms == 100 and a.gain == (0.8, 1.25)
    assert (a.noise is None) == (name == "s-edge-shift-gain")
    assert name == "s-edge-shift-gain" or (a.noise.p == 0.8 and len(a.noise.sources) == 6)


def test_augmented_batches_reach_the_graphed_step(gsc_dev_dir, noise_dir, tmp_path, monkeypatch):
    """s-edge-augmented trains s-edge-tiny a few steps, and the batches handed to the graphed step are the
    augmented ones (time shift, gain, recorded noise), not the clean clips: on the CPU the graph is stood in
    for by a recorder that runs the same step body eagerly."""
    import dataclasses

    import numpy as np

    import kwsbench.train.loop as loop

    seen = []

    class Recorder:  # GraphedStep's interface: (body, model, batch, shape, device, scale); call (xb, yb)
        def __init__(self, body, model, batch, shape, device, scale):
            self.body, self.scale, self.failed = body, scale, ""

        def __call__(self, xb, yb):
            seen.append((xb.clone(), yb.clone()))
            self.body(xb, yb, self.scale)

    monkeypatch.setattr(loop, "_why_eager", lambda *a: "")
    monkeypatch.setattr(gs, "make_capturable", lambda *a: None)
    monkeypatch.setattr(gs, "GraphedStep", Recorder)
    recipe = dataclasses.replace(load_recipe("s-edge-augmented"), batch_size=4)
    cfg = TrainConfig(model="s-edge-tiny", recipe=recipe, data_dir=str(gsc_dev_dir), epochs=1, out=tmp_path / "aug",
                      max_per_class=1, noise_dir=str(noise_dir), show_progress=False)
    res = train(cfg, card=get_card("s-edge-tiny"))
    assert len(seen) >= 2 and np.isfinite(res.history[-1].train_loss)
    tr, _, _ = loop.load_training_data(cfg)
    x, y = torch.from_numpy(np.asarray(tr.audio, dtype=np.float32)), torch.from_numpy(tr.labels.astype(np.int64))
    augment = loop.Augmenter(recipe, tr, cfg.seed, cfg.noise_dir)
    full = [idx for idx in loop._batches(len(y), 4, 0, cfg.seed, 1) if len(idx) == 4]
    assert len(full) == len(seen)
    for step, (idx, (xb, yb)) in enumerate(zip(full, seen, strict=True)):
        assert torch.equal(yb, y[idx]) and torch.equal(xb, augment(x[idx], 0, step))
        assert (xb - x[idx]).abs().max() > 1e-3  # really changed, not the clean clips
