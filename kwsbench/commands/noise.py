"""`kwsbench noise list|show|render`."""

from __future__ import annotations

import argparse
from pathlib import Path

from kwsbench.commands.args import console
from kwsbench.errors import BadInputError
from kwsbench.paths import make_folder

NOISE_DIR_HELP = ("your folder of noise recordings and extra definitions (*.yaml), beside the packaged ones "
                  "(default: $KWSBENCH_NOISE_DIR)")


def register(subparsers) -> None:
    p = subparsers.add_parser("noise", help="noise sources: list, show a definition, render to WAV/PNG",
                              description="Noise sources: the packaged definitions plus your own (--noise-dir or "
                                          "$KWSBENCH_NOISE_DIR).")
    sub = p.add_subparsers(dest="noise_command", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="one line per noise source")
    ls.add_argument("--noise-dir", help=NOISE_DIR_HELP)
    ls.set_defaults(func=_list)
    show = sub.add_parser("show", help="a source's full definition and cache key; --wav / --png to hear and see it")
    show.add_argument("name", help="noise source name, or a path to a definition YAML")
    show.add_argument("--noise-dir", help=NOISE_DIR_HELP)
    show.add_argument("--wav", help="also write 5 rendered clips (seed 0) to this WAV file (default: none)")
    show.add_argument("--png", help="also write their spectrum + spectrogram to this PNG file (default: none)")
    show.add_argument("--data-dir", help="clip set for babble talkers (default: the embedded synthetic set)")
    show.set_defaults(func=_show)
    rend = sub.add_parser("render", help="render a few clips of a source to a WAV file (and a spectrum PNG)")
    rend.add_argument("name", help="noise source name, or a path to a definition YAML")
    rend.add_argument("--out", required=True, help="output WAV path (required)")
    rend.add_argument("--png", help="also write a long-term spectrum + spectrogram figure here (default: none)")
    rend.add_argument("--seed", type=int, default=0, help="global noise seed (default: %(default)s)")
    rend.add_argument("--clips", type=int, default=5, help="number of 1-s clips, concatenated (default: %(default)s)")
    rend.add_argument("--noise-dir", help=NOISE_DIR_HELP)
    rend.add_argument("--data-dir", help="clip set for babble talkers (default: the embedded synthetic set)")
    rend.set_defaults(func=_render)


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kwsbench.noise.definitions import load_all  # the YAML definitions only: no numpy, no torch

    table = Table(title="kwsbench noise sources")
    sources = [s for _, s in sorted(load_all(noise_dir=args.noise_dir).items())]
    out = console()
    name_w, kind_w = max(len(s.name) for s in sources), max(len(s.kind) for s in sources)
    # Names never wrap; the description is cut to what the terminal has left (13 = borders, padding, version).
    desc_w = max(20, out.width - name_w - kind_w - 13 - 7)
    table.add_column("name", no_wrap=True)
    table.add_column("ver", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("description", no_wrap=True)
    for s in sources:
        desc = s.description if len(s.description) <= desc_w else s.description[: desc_w - 1] + "…"
        table.add_row(s.name, str(s.version), s.kind, desc)
    out.print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    from kwsbench.noise import get_source, resolve_recordings

    s = get_source(args.name, args.noise_dir)
    out = console()
    for key in ("name", "version", "kind", "description", "provenance", "licence", "comparable_to", "path", "key"):
        out.print(f"[bold]{key}[/]: {getattr(s, key)}", highlight=False)
    out.print("[bold]params[/]:", highlight=False)
    for k, v in s.params.items():
        out.print(f"  {k}: {v}", highlight=False)
    if s.needs_recordings:
        try:
            files = [str(p) for p in resolve_recordings(s, args.noise_dir)]
        except BadInputError as err:
            files = [f"not found ({err})"]
        out.print(f"[bold]files[/]: {', '.join(files)}", highlight=False)
    if args.wav or args.png:
        _write_clips(args.name, 0, 5, args.noise_dir, args.data_dir, args.wav, args.png)
    else:
        out.print(f"hear and see it: kwsbench noise show {s.name} --wav {s.name}.wav --png {s.name}.png",
                  highlight=False)
    return 0


def _render_clips(name: str, seed: int, clips: int, noise_dir: str | None, data_dir: str | None) -> tuple:
    from kwsbench.noise import get_source
    from kwsbench.noise.bank import build_context
    from kwsbench.noise.sources import render

    source = get_source(name, noise_dir)
    clipset, origin = None, ""
    if source.needs_clipset:  # the figure and the WAV line say whose speech it is made of
        origin = f"from {Path(data_dir).name}" if data_dir else "from the embedded synthetic set"
        if data_dir:
            from kwsbench.data.speech_commands import load_clipset

            clipset = load_clipset(data_dir)
        else:
            from kwsbench.data.speech_commands import load_clipset
            from kwsbench.data.synth import ensure_default_dataset

            clipset = load_clipset(ensure_default_dataset())
    ctx, _ = build_context(source, clipset, noise_dir)
    if clipset is not None:
        ids, speakers = list(clipset.utterance_ids[:clips]), list(clipset.speaker_ids[:clips])
    else:
        ids, speakers = [f"render/{i}" for i in range(clips)], None
    try:
        noise = render(source, ids, seed, ctx, speakers)
    except ValueError as err:
        raise BadInputError(f"noise source {name!r} cannot be rendered: {err}") from err
    return source, noise.reshape(-1), ctx.rate, origin


def _render(args: argparse.Namespace) -> int:
    if args.clips < 1:
        raise BadInputError(f"--clips must be >= 1, got {args.clips}")
    _write_clips(args.name, args.seed, args.clips, args.noise_dir, args.data_dir, args.out, args.png)
    return 0


def _write_clips(name: str, seed: int, clips: int, noise_dir: str | None, data_dir: str | None,
                 wav: str | None, png: str | None) -> None:
    import numpy as np
    import soundfile as sf

    source, audio, rate, origin = _render_clips(name, seed, clips, noise_dir, data_dir)
    label = f"{source.name} v{source.version} (seed {seed}{', ' + origin if origin else ''})"
    out_console = console()
    if wav:
        # Rendered noise is at unit RMS or peak 0.7; scale to peak 0.9 so the 16-bit file never clips.
        peak = float(np.max(np.abs(audio)))
        out = audio * (0.9 / peak) if peak > 0 else audio
        out_path = Path(wav)
        make_folder(out_path.parent, f"--out / --wav {out_path}")
        sf.write(str(out_path), out, rate, subtype="PCM_16")
        out_console.print(f"wrote {out_path} ({len(out) / rate:.1f} s at {rate} Hz, source {label})", highlight=False)
    if png:
        from kwsbench.noise.plot import plot_noise

        make_folder(Path(png).parent, f"--png {png}")
        plot_noise(audio, rate, label, Path(png))
        out_console.print(f"wrote {png}", highlight=False)
