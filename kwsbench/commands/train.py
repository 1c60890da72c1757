"""`kwsbench train MODEL [--recipe NAME|FILE] [--data-dir DIR --protocol P] [--epochs N] [--out DIR] ...`."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kwsbench.commands.args import add_device, console
from kwsbench.errors import EXIT_INTERRUPTED, BadInputError
from kwsbench.paths import make_folder

if TYPE_CHECKING:
    from kwsbench.models.registry import ModelCard


def packaged_recipes() -> list[str]:
    """The recipe files shipped in kwsbench/train/recipes/, read from the folder (importing the recipe module would
    load YAML and slow every --help), so the help never lists a stale set."""
    folder = Path(__file__).resolve().parent.parent / "train" / "recipes"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model by a paper's recipe (or the small synth recipe)",
                              description="Train a registered model by its paper's recipe (or the short synth "
                                          "recipe on the embedded set); optionally publish the weights.")
    p.add_argument("model", help="model card name (see `kwsbench models list`)")
    p.add_argument("--recipe", help=f"packaged recipe name ({', '.join(packaged_recipes())}) or a YAML file; "
                   "default: the model card's recipe, or synth on the synthetic set")
    p.add_argument("--data-dir", help="Speech Commands folder (default: the synthetic set, seed --synth-seed)")
    p.add_argument("--protocol", help="label protocol of --data-dir (default: detected from the layout)")
    p.add_argument("--epochs", type=int, help="override the recipe's number of epochs (default: the recipe's)")
    p.add_argument("--stop-after", type=int, metavar="K", help="stop after epoch K as if interrupted; the "
                   "learning-rate schedule still spans --epochs (reproduces a run cut short at K; default: all epochs)")
    p.add_argument("--out", help="output folder (default runs/train/MODEL): best.pt, last.pt, history.csv")
    add_device(p)
    p.add_argument("--batch-size", type=int, help="overrides the recipe's batch size (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed: init, batch order, augmentation (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt after its last epoch")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    p.add_argument("--no-cuda-graphs", action="store_true", help="launch every kernel of the training step from "
                   "Python (default: on CUDA, a model that allows it, e.g. S-Edge, has its whole step captured in a "
                   "CUDA graph and replayed: same steps, many times faster)")
    p.add_argument("--noise-dir", help="folder with noise recordings for recording-based noise augmentation "
                   "(default: $KWSBENCH_NOISE_DIR)")
    p.add_argument("--synth-seed", type=int, default=1, help="seed of the synthetic training set (default: "
                   "%(default)s; the evaluation default set is seed 0)")
    p.add_argument("--max-per-class", type=int, help="use at most N clips per class, for smoke runs (default: all)")
    p.add_argument("--publish", metavar="MANIFEST", help="copy best.pt to MANIFEST/MODEL.pt beside the manifests "
                   "and record it in MANIFEST.yaml, e.g. synth (default: not published; the manifests folder is "
                   "$KWSBENCH_MANIFESTS, else checkpoints/)")
    p.add_argument("--publish-final", action="store_true", help="with --publish: record the last epoch's weights "
                   "instead of the best (for a card that stands for a final-epoch checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run)


def default_recipe(card: ModelCard, data_dir: str | None) -> str:
    """The card's recipe on real data; the short synth recipe on the embedded synthetic set."""
    from kwsbench.train.recipes import list_recipes

    if data_dir is None:
        return "synth"
    if card.recipe is None:
        raise BadInputError(f"model {card.name} has no packaged training recipe; pass --recipe with one of "
                            f"{', '.join(list_recipes())} or a recipe YAML file")
    return card.recipe


def _check_device(device: str) -> None:
    """The rule `run` applies: a malformed device, or CUDA where torch sees none, is bad input (exit 5) before
    any data is loaded, not a torch traceback from the first CUDA call."""
    import torch

    from kwsbench.run.plan import device_problem

    if device_problem(device):
        raise BadInputError(f"--device {device!r} {device_problem(device)}; e.g. --device cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")


def _run(args: argparse.Namespace) -> int:
    from kwsbench.models.registry import get_card
    from kwsbench.train.loop import TrainConfig, publish, train
    from kwsbench.train.recipes import load_recipe

    card = get_card(args.model)
    _check_device(args.device)
    recipe = load_recipe(args.recipe or default_recipe(card, args.data_dir))
    if args.epochs is not None and args.epochs < 1:
        raise BadInputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.stop_after is not None and args.stop_after < 1:
        raise BadInputError(f"--stop-after must be >= 1, got {args.stop_after}")
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise BadInputError(f"--batch-size must be >= 1, got {args.batch_size}")
        recipe = dataclasses.replace(recipe, batch_size=args.batch_size)  # recorded with the recipe in the metadata
    cfg = TrainConfig(
        model=card.name, recipe=recipe, data_dir=args.data_dir, protocol=args.protocol, epochs=args.epochs,
        out=Path(args.out or f"runs/train/{card.name}"), device=args.device, seed=args.seed, resume=args.resume,
        amp=args.amp, compile=args.compile, noise_dir=args.noise_dir, synth_seed=args.synth_seed,
        max_per_class=args.max_per_class, stop_after=args.stop_after, cuda_graphs=not args.no_cuda_graphs,
        show_progress=not args.quiet,
        command="kwsbench " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else f"kwsbench train {card.name}",
    )
    make_folder(cfg.out, f"train --out {cfg.out}")  # before training, not when the first epoch is saved
    if args.resume and not (cfg.out / "last.pt").is_file():
        console(stderr=True).print(f"--resume: no {cfg.out / 'last.pt'} yet; training starts at epoch 1",
                                   highlight=False, soft_wrap=True)
    try:
        result = train(cfg, card=card)
    except KeyboardInterrupt:  # the CLI's own line speaks of stored cells, which a training has none of
        last = cfg.out / "last.pt"
        print(f"interrupted; {last} holds the last finished epoch: run the same command with --resume to continue"
              if last.is_file() else f"interrupted before the first epoch finished; nothing was kept in {cfg.out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    out = console()
    out.print(f"best validation accuracy {result.best_val_acc:.2f} % at epoch {result.best_epoch}: "
                  f"{result.best_path}", highlight=False)
    if args.publish:
        entry = publish(result, args.publish, final=args.publish_final)
        out.print(f"recorded {args.publish}:{entry.id} (sha256 {entry.sha256[:12]}…)", highlight=False)
    return 0
