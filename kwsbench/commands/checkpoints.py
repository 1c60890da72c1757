"""`kwsbench checkpoints list|verify|import DIR|fetch [IDS]`: parsing only; the work is in kwsbench.checkpoints."""

from __future__ import annotations

import argparse

from kwsbench.commands.args import console
from kwsbench.errors import EXIT_CHECKPOINT, EXIT_OK, CheckpointError

URL_BASE = "https://raw.githubusercontent.com"  # = kwsbench.checkpoints.DEFAULT_URL_BASE (a test keeps them equal)


def register(subparsers) -> None:
    p = subparsers.add_parser("checkpoints", help="list, verify, import or fetch model checkpoints",
                              description="Model weights, sha256-pinned by manifests (the packaged ones plus "
                                          "$KWSBENCH_MANIFESTS).")
    sub = p.add_subparsers(dest="checkpoints_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="every checkpoint of every manifest, and whether it is present").set_defaults(
        func=_list)
    sub.add_parser("verify", help="sha256 of every present checkpoint file").set_defaults(func=_verify)
    imp = sub.add_parser("import", help="copy checkpoints from a local folder or repository clone (verified)")
    imp.add_argument("dir", help="folder with <Folder>/<file> (e.g. ../shared/checkpoints/nc-ssm or .../kwt), or a "
                     "repository clone; a published file of another format (KWT's .tflite) is converted once")
    imp.add_argument("--manifest", help="import only this manifest's files (default: every public manifest with "
                     "files in DIR)")
    imp.set_defaults(func=_import)
    fe = sub.add_parser("fetch", help="download checkpoints from their public source (verified)")
    fe.add_argument("ids", nargs="*", help="checkpoint ids (default: every file of the manifest)")
    fe.add_argument("--manifest", default="nc-ssm", help="manifest whose files to fetch (default: %(default)s)")
    fe.add_argument("--url-base", default=URL_BASE,
                    help="raw-file server; URL = BASE/<repository>/<commit>/<path> (default: %(default)s)")
    fe.set_defaults(func=_fetch)


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kwsbench import checkpoints as ck

    table = Table(title="kwsbench checkpoints")
    for col in ("manifest", "id", "model", "sha256", "size", "present"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for s in ck.status():
        table.add_row(s.manifest, s.entry.id, s.entry.model, s.entry.sha256[:12], str(s.entry.size or ""),
                      "yes" if s.present else "no")
    console().print(table)
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kwsbench import checkpoints as ck

    rows = [s for s in ck.status(check=True) if s.present]
    table = Table(title="checkpoint verification")
    for col in ("manifest", "id", "sha256", "result"):
        table.add_column(col)
    for s in rows:
        table.add_row(s.manifest, s.entry.id, s.entry.sha256[:12], "ok" if s.ok else "[red]MISMATCH[/]")
    out = console()
    out.print(table)
    bad = [s for s in rows if not s.ok]
    if not rows:
        out.print("no checkpoint files present: run `kwsbench checkpoints import DIR` or `fetch`")
    if bad:
        raise CheckpointError(f"{len(bad)} checkpoint file(s) do not match their manifest: "
                              + ", ".join(str(s.path) for s in bad) + ". Delete them and import / fetch again.")
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from kwsbench import checkpoints as ck

    if args.manifest:
        reports = {args.manifest: ck.import_dir(args.dir, manifest=args.manifest)}
        if not any((r.imported or r.already or r.mismatched) for r in reports.values()):
            raise CheckpointError(f"no checkpoint of manifest {args.manifest!r} found in {args.dir}")
    else:
        reports = ck.import_found(args.dir)
    out = console()
    for name, rep in reports.items():
        for label, items in (("imported", rep.imported), ("already present", rep.already),
                             ("sha256 MISMATCH, not imported", rep.mismatched), ("not found", rep.missing)):
            if items:
                out.print(f"[bold]{name}: {label}[/] ({len(items)}): " + ", ".join(items), highlight=False)
    if any(r.mismatched for r in reports.values()):
        out.print("a mismatching file is another version of the checkpoint (e.g. the repository HEAD "
                  "NanoMamba-Tiny/best.pt); `kwsbench checkpoints fetch ID` gets the pinned one.")
        return EXIT_CHECKPOINT
    return EXIT_OK


def _fetch(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from kwsbench import checkpoints as ck

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(file_id: str, done: int, total: int | None) -> None:
            if file_id not in tasks:
                tasks[file_id] = bar.add_task(file_id, total=total)
            bar.update(tasks[file_id], completed=done, total=total)

        fetched = ck.fetch(args.ids or None, manifest=args.manifest, url_base=args.url_base, progress=progress)
    console().print(f"fetched {len(fetched)} file(s); the others were already present and verified")
    return EXIT_OK
