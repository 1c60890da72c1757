"""The training loop: a recipe (kwsbench.train.recipes) applied to a model card on a keyword data set.

Determinism: every random draw comes from a generator seeded by (seed, epoch, step) through
numpy's SeedSequence, so an interrupted run resumed from its last epoch continues exactly as if it
had not stopped, and a batch's augmentation does not depend on how many processes share it. The
model's initial weights come from its build's own generator (seed derived from the training seed).
Dropout is the one draw from torch's global generator in the whole library: nn.Dropout and the fused
CUDA kernel take no generator (and a CUDA-graphed step replays the device generator's draws). Each
epoch seeds the global generator inside `torch.random.fork_rng`, which restores the caller's state
afterwards; training runs one model per process, so no other draw interleaves with it.

Files written to `out/`: best.pt (best validation accuracy), last.pt (model + optimiser, for
--resume), history.csv. Checkpoints hold only tensors and a JSON-able metadata dict, and load with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kwsbench import checkpoints as ck
from kwsbench.data.clipset import ClipSet
from kwsbench.data.subsets import cap_per_class, derive_seed, speaker_split
from kwsbench.errors import BadInputError, CheckpointError
from kwsbench.provenance import git_commit
from kwsbench.run.distributed import Shard, init_from_env
from kwsbench.train import graphed as gs
from kwsbench.train.recipes import Recipe, SpecAugment

# Training noise comes from banks seeded at or above this base; evaluation seeds are small integers, so the
# noise a model is trained with is never the noise it is tested with (same source or not).
TRAIN_NOISE_SEED_BASE = 1 << 31
CHECKPOINT_FORMAT = 1
HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


@dataclass
class TrainConfig:
    model: str  # card name (or alias)
    recipe: Recipe
    data_dir: str | None = None  # None: the synthetic set with seed `synth_seed`
    protocol: str | None = None
    epochs: int | None = None  # overrides the recipe
    out: str | Path = "runs/train"
    device: str = "cpu"
    seed: int = 0
    resume: bool = False
    amp: bool = False  # bf16 autocast, CUDA only
    compile: bool = False  # torch.compile, CUDA only
    noise_dir: str | None = None
    synth_seed: int = 1  # the evaluation default set is seed 0: train on another draw of voices
    max_per_class: int | None = None  # cap clips per class (tests, smoke runs)
    stop_after: int | None = None  # stop after this epoch as if interrupted (the schedule still spans all epochs)
    cuda_graphs: bool = True  # capture the training step in a CUDA graph where the model allows it (graphed.py)
    show_progress: bool = True
    command: str = ""  # recorded in the metadata


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    best_path: Path
    last_path: Path
    history_path: Path
    best_epoch: int
    best_val_acc: float
    history: list[EpochRecord] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


# -- seeding -----------------------------------------------------------------------------------

def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def _forked_rng(device: str):
    """Global torch RNG use (dropout) without leaving a trace in the caller's state."""
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    return torch.random.fork_rng(devices=devices)


# -- data --------------------------------------------------------------------------------------

def load_training_data(cfg: TrainConfig) -> tuple[ClipSet, ClipSet, str]:
    """(train, validation, protocol name). A full Speech Commands folder gives the protocol's own splits;
    a test-layout folder (the synthetic set, or a canonical test set) is split by speaker."""
    from kwsbench.data.speech_commands import load_clipset, resolve_root

    if cfg.data_dir is None:
        from kwsbench.data.synth import ensure_default_dataset

        data_dir: Path = ensure_default_dataset(seed=cfg.synth_seed)
        base = f"synth-seed{cfg.synth_seed}"
    else:
        data_dir = Path(cfg.data_dir).expanduser()
        base = ""
    _, layout = resolve_root(data_dir, cfg.protocol)
    if layout == "canonical":
        full = load_clipset(data_dir, protocol=cfg.protocol)
        if cfg.max_per_class:
            full = cap_per_class(full, cfg.max_per_class, cfg.seed)
        train, val = speaker_split(full, cfg.recipe.val_fraction, cfg.seed)
        name = f"{base or full.protocol}-speaker-split"
        if base == "" and "test_dev" in str(data_dir):
            name = "v2-12-official-mini"  # the team's dev subset of the official test set, split by speaker
        return train, val, name
    train = load_clipset(data_dir, protocol=cfg.protocol, split="train")
    val = load_clipset(data_dir, protocol=cfg.protocol, split="validation")
    if cfg.max_per_class:
        train, val = (cap_per_class(c, cfg.max_per_class, cfg.seed) for c in (train, val))
    return train, val, train.protocol.split(":")[0]


# -- optimiser and schedule --------------------------------------------------------------------

def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Recipe groups by leaf-name substring (first group that matches wins); the rest form 'default'."""
    groups = {g.name: (g, []) for g in recipe.param_groups}
    rest = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        hit = next((g for g in recipe.param_groups if any(s in leaf for s in g.contains)), None)
        (groups[hit.name][1] if hit else rest).append(p)
    out = [{"name": g.name, "params": ps, "lr": recipe.lr * g.lr_scale, "weight_decay": g.weight_decay}
           for g, ps in groups.values() if ps]
    if rest:
        out.append({"name": "default", "params": rest, "lr": recipe.lr * recipe.default_lr_scale,
                    "weight_decay": recipe.weight_decay})
    return out


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe)
    if not groups:
        raise BadInputError("the model has no trainable parameters")
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    elif recipe.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=recipe.lr)
    else:
        opt = torch.optim.AdamW(groups, lr=recipe.lr)
    for g in opt.param_groups:
        g["peak_lr"] = g["lr"]  # the schedule scales from here every step
    return opt


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine from 1 down to `min_ratio` at `total_steps`."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# -- augmentation ------------------------------------------------------------------------------

class Augmenter:
    """Waveform augmentation of one global batch: time shift, gain, Gaussian and source noise.

    Draws for a batch come from a generator seeded by (seed, epoch, step) and are made for the whole
    global batch, so data-parallel ranks that each take a slice see the same augmented clips as one
    process would. Source noise: one bank per source on the training clips at seed
    TRAIN_NOISE_SEED_BASE + seed; each noisy clip takes a random row of a random bank at a random SNR.
    """

    def __init__(self, recipe: Recipe, train: ClipSet, seed: int, noise_dir: str | None = None) -> None:
        self.aug, self.seed = recipe.augment, seed
        self.banks: list[torch.Tensor] = []
        if self.aug.noise and self.aug.noise.p > 0:
            from kwsbench.noise import NoiseBank

            for name in self.aug.noise.sources:
                bank = NoiseBank(train, name, seed=TRAIN_NOISE_SEED_BASE + seed, noise_dir=noise_dir)
                self.banks.append(torch.from_numpy(np.ascontiguousarray(bank.noise, dtype=np.float32)))

    def __call__(self, x: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        g = _generator(self.seed, 0xA06, epoch, step)
        b, t = x.shape
        if self.aug.time_shift_ms:
            x = time_shift(x, torch.randint(-(m := int(self.aug.time_shift_ms * 16)), m + 1, (b,), generator=g))
        if self.aug.gain:
            lo, hi = self.aug.gain
            x = x * (lo + (hi - lo) * torch.rand(b, 1, generator=g))
        if self.aug.gaussian_noise:
            on = (torch.rand(b, 1, generator=g) < self.aug.gaussian_noise.p).float()
            x = x + on * self.aug.gaussian_noise.sigma * torch.randn(b, t, generator=g)
        if self.banks:
            x = self._source_noise(x, g)
        return x

    def _source_noise(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        from kwsbench.noise import mix

        b = x.shape[0]
        cfg = self.aug.noise
        on = torch.rand(b, generator=g) < cfg.p
        which = torch.randint(0, len(self.banks), (b,), generator=g)
        rows = torch.randint(0, self.banks[0].shape[0], (b,), generator=g)
        snr = cfg.snr_db[0] + (cfg.snr_db[1] - cfg.snr_db[0]) * torch.rand(b, generator=g, dtype=torch.float64)
        if not on.any():
            return x
        noise = torch.stack([self.banks[int(k)][int(r)] for k, r in zip(which, rows, strict=True)])
        mixed = mix(x, noise, snr, "rms", 16000)
        return torch.where(on[:, None], mixed.to(x.dtype), x)


def time_shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each row by its own number of samples (positive: later), zero fill, same length."""
    t = x.shape[1]
    src = torch.arange(t)[None, :] - shifts[:, None]
    valid = (src >= 0) & (src < t)
    return torch.where(valid, x.gather(1, src.clamp(0, t - 1)), torch.zeros((), dtype=x.dtype))


def spec_augment_hook(cfg: SpecAugment, seed: int) -> Callable:
    """A forward hook masking (B, ..., F, T) front-end output in training mode (Park et al. masks)."""
    calls = [0]

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not module.training or not isinstance(output, torch.Tensor) or output.dim() < 3:
            return output
        calls[0] += 1
        g = _generator(seed, 0x5EC, calls[0])
        f_bins, frames = output.shape[-2], output.shape[-1]
        keep = torch.ones(output.shape[0], f_bins, frames)
        for _ in range(cfg.freq_masks):
            _mask(keep, f_bins, cfg.freq_width, g, axis=1)
        for _ in range(cfg.time_masks):
            _mask(keep, frames, cfg.time_width, g, axis=2)
        shape = (output.shape[0],) + (1,) * (output.dim() - 3) + (f_bins, frames)
        return output * keep.view(shape).to(output.device, output.dtype)

    return hook


def _mask(keep: torch.Tensor, size: int, width: int, g: torch.Generator, axis: int) -> None:
    for i in range(keep.shape[0]):
        w = int(torch.randint(0, width + 1, (1,), generator=g))
        if w == 0 or w >= size:
            continue
        start = int(torch.randint(0, size - w + 1, (1,), generator=g))
        if axis == 1:
            keep[i, start:start + w, :] = 0
        else:
            keep[i, :, start:start + w] = 0


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """sqrt(mean((W W^T * (1 - I))^2)): off-diagonal correlation of the rows of W (S-Edge's decoder term)."""
    gram = weight @ weight.t()
    off = gram * (1 - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype))
    return off.square().mean().sqrt()


def standardise_input(model: nn.Module, train_set: ClipSet) -> dict[str, float] | None:
    """Models that standardise their raw input by fixed statistics (S-Edge: s-edge.md §4, one global mean and
    std over the training samples) get them from the clean training clips here, before the first step; the
    statistics are buffers, so they travel in the checkpoint. Returns what was set, or None."""
    if not hasattr(model, "standardise_input"):
        return None
    audio = np.asarray(train_set.audio)
    total = total_sq = 0.0
    for rows in range(0, len(audio), 1024):  # float64 sums in slices: no float64 copy of a whole training set
        part = audio[rows:rows + 1024].astype(np.float64)
        total, total_sq = total + part.sum(), total_sq + np.square(part).sum()
    mean = float(total / max(audio.size, 1))
    std = float(np.sqrt(max(total_sq / max(audio.size, 1) - mean * mean, 0.0)))
    model.standardise_input(mean, std)
    return {"mean": mean, "std": std}


def _setup_model_options(model: nn.Module, recipe: Recipe, seed: int, say: Callable[[str], None],
                         rzoh_built: bool = False) -> None:
    """SpecAugment hook and RZOH, where the model offers the hook points; say so where it does not."""
    sa = recipe.augment.specaugment
    if sa is not None:
        module = dict(model.named_modules()).get(sa.module)
        if module is None:
            say(f"SpecAugment skipped: the model has no submodule {sa.module!r} exposing its features")
        else:
            module.register_forward_hook(spec_augment_hook(sa, seed))
    if recipe.augment.rzoh and not rzoh_built:
        if hasattr(model, "set_rzoh"):
            model.set_rzoh(True)
        else:
            say("RZOH skipped: the model offers no set_rzoh(enabled) and its builder takes no rzoh argument")


def _build_overrides(card: Any, recipe: Recipe) -> dict[str, Any]:
    """RZOH (S-Edge) is a parameter-free module chosen at build time: ask the builder for it when it can.
    The state dict is the same with or without it, so the checkpoint loads into the card's default build."""
    import inspect

    try:
        takes = "rzoh" in inspect.signature(card.builder).parameters
    except (TypeError, ValueError):
        takes = False
    return {"rzoh": True} if recipe.augment.rzoh and takes else {}


# -- checkpoints -------------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, Any],
                    optimizer: dict[str, Any] | None = None, generators: dict[str, torch.Tensor] | None = None) -> None:
    """Tensors + JSON-able metadata only, written to a temporary name and renamed (never half a file)."""
    # a JSON round trip fails here, not at load time, on anything not JSON-able, and turns str subclasses
    # (torch.__version__) into plain str, which weights_only unpickling accepts
    metadata = json.loads(json.dumps(metadata))
    payload: dict[str, Any] = {"model_state_dict": {k: v.detach().cpu().clone() for k, v in state.items()},
                               "metadata": metadata}
    if optimizer is not None:
        payload["optimizer_state_dict"] = optimizer
    if generators:  # the model's own random generators (S-Edge dropout, RZOH), for an exact --resume
        payload["generator_states"] = generators
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The saved payload (model_state_dict, metadata[, optimizer_state_dict]), read by the checkpoint reader
    (weights_only=True)."""
    obj = ck.read_payload(path)
    if not isinstance(obj, dict) or "model_state_dict" not in obj or "metadata" not in obj:
        raise CheckpointError(f"{path} is not a kwsbench training checkpoint (no model_state_dict / metadata)")
    return obj


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


# -- the loop ----------------------------------------------------------------------------------

def _batches(n: int, batch: int, epoch: int, seed: int, world: int) -> list[torch.Tensor]:
    """Global batches of a seeded permutation; a last batch too small to give every rank a clip is dropped."""
    perm = torch.randperm(n, generator=_generator(seed, 0xB47, epoch))
    out = [perm[i:i + batch] for i in range(0, n, batch)]
    return [b for b in out if len(b) >= world]


@torch.no_grad()
def evaluate(model: nn.Module, audio: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy %) of a model in eval mode, clean audio."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(labels), batch):
        logits = model(audio[i:i + batch]).float()
        loss += F.cross_entropy(logits, labels[i:i + batch], reduction="sum").item()
        correct += int((logits.argmax(-1) == labels[i:i + batch]).sum())
    return loss / max(len(labels), 1), 100.0 * correct / max(len(labels), 1)


def _to_rate(audio: np.ndarray, rate: int, device: str) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if rate != 16000:
        from kwsbench.audio import resample

        x = resample(x, 16000, rate)
    return x.to(device)


def _metadata(cfg: TrainConfig, card: Any, recipe: Recipe, train: ClipSet, val: ClipSet, protocol: str,
              dist: Shard) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT, "model": card.name, "recipe": recipe.to_dict(), "protocol": protocol,
        "train_fingerprint": train.fingerprint, "val_fingerprint": val.fingerprint,
        "train_clips": len(train), "val_clips": len(val), "labels": list(train.label_names),
        "seed": cfg.seed, "git_commit": git_commit(), "torch": str(torch.__version__), "world_size": dist.world,
        "data_dir": cfg.data_dir or f"synthetic set seed {cfg.synth_seed}", "command": cfg.command,
    }


def _check_resume(last: Path, meta: dict[str, Any]) -> dict[str, Any]:
    saved = read_checkpoint(last)
    old = saved["metadata"]
    for key in ("model", "recipe", "seed", "train_fingerprint"):
        if old.get(key) != meta.get(key):
            raise BadInputError(
                f"--resume: {last} was trained with another {key} ({str(old.get(key))[:80]!s}); "
                "use a new --out folder or the same settings")
    return saved


def _write_history(path: Path, history: list[EpochRecord]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        for rec in history:
            w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(rec).items()})
    os.replace(tmp, path)


def read_history(path: str | Path) -> list[EpochRecord]:
    with open(path, newline="") as fh:
        return [EpochRecord(int(r["epoch"]), *(float(r[k]) for k in HISTORY_FIELDS[1:])) for r in csv.DictReader(fh)]


def train(cfg: TrainConfig, card: Any = None) -> TrainResult:
    """Train `cfg.model` (or the given card) by `cfg.recipe`; returns where the files went and the history."""
    from kwsbench.models.registry import get_card

    card = card or get_card(cfg.model)
    recipe = cfg.recipe
    epochs = cfg.epochs or recipe.epochs
    dist, cfg.device = init_from_env(cfg.device)  # under torchrun: one GPU per process
    say = _printer(dist, cfg.show_progress)
    train_set, val_set, protocol = load_training_data(cfg)
    num_classes = len(train_set.label_names)
    if num_classes != card.num_classes and not card.head_is_sizable:
        raise BadInputError(f"model {card.name} has a fixed {card.num_classes}-class head but the data has "
                            f"{num_classes} classes ({protocol}); choose a matching --protocol")
    out = Path(cfg.out)
    best_path, last_path, hist_path = out / "best.pt", out / "last.pt", out / "history.csv"
    meta = _metadata(cfg, card, recipe, train_set, val_set, protocol, dist)
    overrides = _build_overrides(card, recipe)
    # the head follows the data; the initialisation seed is the one versions before the builds' own generator
    # gave torch.manual_seed, and the draws are the same, so a recorded command still starts from the same weights
    model = card.build(num_classes=num_classes, init_seed=derive_seed(cfg.seed, 0x1417), **overrides)
    model = model.to(cfg.device)
    standardisation = standardise_input(model, train_set)
    if standardisation:
        meta["input_standardisation"] = standardisation
    _setup_model_options(model, recipe, cfg.seed, say, rzoh_built="rzoh" in overrides)
    opt = build_optimizer(model, recipe)
    start, history, best = 0, [], (0, -1.0)
    if cfg.resume and last_path.is_file():
        saved = _check_resume(last_path, meta)
        model.load_state_dict(saved["model_state_dict"], strict=True)
        opt.load_state_dict(saved["optimizer_state_dict"])
        if "generator_states" in saved:
            model.set_generator_states(saved["generator_states"])
        start = int(saved["metadata"]["epoch"])
        best = (int(saved["metadata"]["best_epoch"]), float(saved["metadata"]["best_val_acc"]))
        history = [r for r in read_history(hist_path) if r.epoch <= start] if hist_path.is_file() else []
        say(f"resuming {card.name} after epoch {start} (best {best[1]:.2f} % at epoch {best[0]})")
    net = _wrap(model, cfg, dist)
    why_eager = _why_eager(cfg, model, recipe, dist, card.native_rate)
    meta["training_step"] = f"eager ({why_eager})" if why_eager else "CUDA graph"
    say(f"training {card.name} with recipe {recipe.name} for {epochs} epochs on {meta['data_dir']} ({protocol}): "
        f"{len(train_set)} training / {len(val_set)} validation clips; training step: {meta['training_step']}")
    if not why_eager:
        gs.make_capturable(opt, cfg.device)
    xs_train = _to_rate(train_set.audio, 16000, "cpu")  # augmented at 16 kHz, then brought to the model's rate
    x_val = _to_rate(val_set.audio, card.native_rate, cfg.device)
    y_train = torch.from_numpy(train_set.labels.astype(np.int64))
    y_val = torch.from_numpy(val_set.labels.astype(np.int64)).to(cfg.device)
    augment = Augmenter(recipe, train_set, cfg.seed, cfg.noise_dir)
    steps_per_epoch = len(_batches(len(y_train), recipe.batch_size, 0, cfg.seed, dist.world))
    total = steps_per_epoch * epochs
    warmup = recipe.warmup_steps or recipe.warmup_epochs * steps_per_epoch
    body = StepBody(net, model, opt, recipe, cfg)
    graphed = None if why_eager else gs.GraphedStep(body, model, recipe.batch_size, tuple(xs_train.shape[1:]),
                                                 cfg.device, 1.0 / recipe.batch_size)
    for epoch in range(start, min(epochs, cfg.stop_after or epochs)):
        t0 = time.perf_counter()
        with _forked_rng(cfg.device):
            torch.manual_seed(derive_seed(cfg.seed, 0xD20, epoch))  # dropout (the module docstring says why)
            loss, acc, lr = _train_epoch(body, graphed, opt, recipe, augment, xs_train, y_train, epoch,
                                         steps_per_epoch, total, warmup, cfg, dist, card.native_rate)
        if graphed is not None and graphed.failed:
            meta["training_step"] = f"eager (capture failed: {graphed.failed})"
        val_loss, val_acc = evaluate(model, x_val, y_val)
        rec = EpochRecord(epoch + 1, loss, acc, val_loss, val_acc, lr, time.perf_counter() - t0)
        history.append(rec)
        if val_acc > best[1]:
            best = (epoch + 1, val_acc)
            if dist.main:
                save_checkpoint(best_path, _unwrap(model).state_dict(), {**meta, "epoch": epoch + 1,
                                                                          "val_acc": val_acc})
        if dist.main:
            save_checkpoint(last_path, _unwrap(model).state_dict(),
                            {**meta, "epoch": epoch + 1, "val_acc": val_acc, "best_epoch": best[0],
                             "best_val_acc": best[1]}, optimizer=gs.portable_optimizer_state(opt),
                            generators=model.generator_states() if hasattr(model, "generator_states") else None)
            _write_history(hist_path, history)
        say(f"{card.name} epoch {epoch + 1}/{epochs}: loss {loss:.4f} acc {acc:.1f} % | val loss {val_loss:.4f} "
            f"acc {val_acc:.2f} % | lr {lr:.2e} | {rec.seconds:.1f} s")
    if dist.world > 1:
        torch.distributed.barrier()
    final_meta = read_checkpoint(best_path)["metadata"] if best_path.is_file() else meta
    return TrainResult(best_path, last_path, hist_path, best[0], best[1], history, final_meta)


def _wrap(model: nn.Module, cfg: TrainConfig, dist: Shard) -> nn.Module:
    net = model
    if cfg.compile and cfg.device.startswith("cuda"):
        net = torch.compile(net)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(cfg.device).index or 0] if cfg.device.startswith("cuda") else None
        net = DistributedDataParallel(net, device_ids=ids)
    return net


def _why_eager(cfg: TrainConfig, model: nn.Module, recipe: Recipe, dist: Shard, rate: int) -> str:
    """Why the step cannot be a CUDA graph here ('' when it can)."""
    reasons = [(not cfg.cuda_graphs, "--no-cuda-graphs"), (not cfg.device.startswith("cuda"), "not on CUDA"),
               (rate != 16000, "resampled input"),
               (dist.world > 1, "data-parallel"), (cfg.amp, "--amp"), (cfg.compile, "--compile"),
               (not gs.supports_graphed_step(model), "the model draws on the host during training"),
               (recipe.augment.specaugment is not None, "SpecAugment draws on the host")]
    return next((why for hit, why in reasons if hit), "")


class StepBody:
    """One optimisation step on a device batch, without host synchronisation: forward, loss, backward,
    optimiser; the loss and correct count of the epoch add up on the device (read once per epoch)."""

    def __init__(self, net: nn.Module, model: nn.Module, opt: torch.optim.Optimizer, recipe: Recipe,
                 cfg: TrainConfig) -> None:
        self.net, self.model, self.opt, self.recipe, self.cfg = net, model, opt, recipe, cfg
        self.ortho = None
        if recipe.orthogonality is not None:
            self.ortho = dict(model.named_parameters()).get(recipe.orthogonality.param)
            if self.ortho is None:  # silently training without the term is how the S-Edge recipe once lost it
                raise BadInputError(f"recipe {recipe.name!r} puts an orthogonality term on parameter "
                                    f"{recipe.orthogonality.param!r}, which this model does not have; use a recipe "
                                    "without the term or one that names one of the model's parameters")
        device = cfg.device if cfg.device.startswith("cuda") else "cpu"
        self.loss_total = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        recipe, cfg = self.recipe, self.cfg
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and cfg.device.startswith("cuda")):
            logits = self.net(xb)
        # sum over this rank's clips / global batch size, times world: DDP's gradient mean over ranks then
        # equals the gradient of the mean loss over the whole global batch, however unevenly it was sliced
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=recipe.label_smoothing, reduction="sum") * scale
        if self.ortho is not None:
            loss = loss + recipe.orthogonality.weight * orthogonality_penalty(self.ortho)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), recipe.grad_clip)
        self.opt.step()
        self.loss_total.add_(loss.detach().double() / scale)  # / scale: per-clip losses summed, as reported
        self.correct.add_((logits.argmax(-1) == yb).sum())
        return loss, logits


def _train_epoch(body, graphed, opt, recipe, augment, x, y, epoch, steps, total, warmup, cfg, dist, model_rate):
    body.net.train()
    body.loss_total.zero_()
    body.correct.zero_()
    seen, lr = 0, 0.0
    progress = _progress(dist, cfg.show_progress, steps, f"epoch {epoch + 1}")
    for step, idx in enumerate(_batches(len(y), recipe.batch_size, epoch, cfg.seed, dist.world)):
        factor = lr_factor(epoch * steps + step, total, warmup, recipe.min_lr_ratio)
        gs.set_lr(opt, factor)
        lr = opt.param_groups[-1]["peak_lr"] * factor
        xb = augment(x[idx], epoch, step)[dist.rank::dist.world]
        yb = y[idx][dist.rank::dist.world]
        if graphed is not None and len(idx) == recipe.batch_size:
            graphed(xb, yb)
        else:  # eager: no graph, or the short last batch of an epoch (another shape than the captured one)
            body(_to_rate(xb.numpy(), model_rate, cfg.device), yb.to(cfg.device), dist.world / len(idx))
        seen += len(yb)
        # the running loss costs a host synchronisation: read it now and then only
        progress(step + 1, float(body.loss_total) / seen if cfg.show_progress and (step + 1) % 25 == 0 else None)
    progress(None, None)
    return float(body.loss_total) / max(seen, 1), 100.0 * int(body.correct) / max(seen, 1), lr


def _printer(dist: Shard, enabled: bool) -> Callable[[str], None]:
    from rich.console import Console

    console = Console(stderr=True)

    def say(text: str) -> None:
        if enabled and dist.main:  # whole lines: rich would wrap them at 80 columns in a piped log
            console.print(text, highlight=False, soft_wrap=True)

    return say


def _progress(dist: Shard, enabled: bool, total: int, label: str) -> Callable:
    """A rich progress bar over the steps of one epoch (rank 0 only); call with None to close it."""
    if not (enabled and dist.main):
        return lambda *a: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                   TimeElapsedColumn(), transient=True)
    task = bar.add_task(label, total=total, loss="")
    bar.start()

    def update(done: int | None, loss: float | None) -> None:
        if done is None:
            bar.stop()
        elif loss is None:
            bar.update(task, completed=done)
        else:
            bar.update(task, completed=done, loss=f"loss {loss:.4f}")

    return update


# -- the project's own checkpoints --------------------------------------------------------------

# options that only say where the files went or how the run was shown: a reader re-running the recorded
# command gets the same checkpoint without them, and a private --out path (e.g. under /tmp) means nothing to them
_LOCAL_FLAGS = {"--quiet", "--resume"}
_LOCAL_OPTIONS = {"--out"}


def reproducible_command(command: str) -> str:
    """`command` as a user would type it to re-create the checkpoint: without --out DIR, --quiet, --resume."""
    words, kept = shlex.split(command), []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if word in _LOCAL_FLAGS or name in _LOCAL_OPTIONS:
            skip = word in _LOCAL_OPTIONS  # `--out DIR`: drop DIR too; `--out=DIR` is one word
            continue
        kept.append(word)
    return shlex.join(kept)


def publish(result: TrainResult, manifest: str, file_id: str | None = None, final: bool = False) -> Any:
    """Copy best.pt (or, `final`, the last epoch's weights) to checkpoints/<manifest>/<file_id> and record it
    (sha256, how it was made) in the manifest."""
    meta = result.metadata
    file_id = file_id or f"{meta['model']}.pt"
    dst = ck.manifest_dir() / manifest / file_id
    dst.parent.mkdir(parents=True, exist_ok=True)
    if final:  # last.pt less its optimiser state: what a final-epoch checkpoint holds
        saved = read_checkpoint(result.last_path)
        meta = {k: v for k, v in saved["metadata"].items() if k not in ("best_epoch", "best_val_acc")}
        save_checkpoint(dst, saved["model_state_dict"], meta)
    else:
        shutil.copyfile(result.best_path, dst)
    return ck.record_checkpoint(
        manifest, file_id, meta["model"], epoch=int(meta["epoch"]), val_acc=round(float(meta["val_acc"]), 4),
        weights="final epoch" if final else "best validation epoch",
        note=f"trained by kwsbench; validation = speaker-disjoint split; {meta['val_clips']} val clips",
        command=reproducible_command(meta.get("command", "")), seed=int(meta["seed"]), recipe=meta["recipe"]["name"],
        protocol=meta["protocol"], train_fingerprint=meta["train_fingerprint"],
        val_fingerprint=meta["val_fingerprint"], train_clips=int(meta["train_clips"]), labels=list(meta["labels"]),
        git_commit=meta.get("git_commit", ""), train_seconds=round(sum(r.seconds for r in result.history), 1),
    )
