"""Checkpoint manifests, sha256 verification, import / fetch, declared key remaps and safe loading.

A manifest is a YAML file `checkpoints/<name>.yaml` describing a set of weight files: where each file
lives, where it came from, its sha256 and size, which model card it belongs to and any key renames it
needs. Weight files are data, never code: the sha256 is checked before anything is unpickled,
`torch.load` runs with `weights_only=True`, and the state dict is loaded strictly, always.

Two storage locations:
- `location: home` (public checkpoints): files under `paths.checkpoint_home()/<manifest>/<id>`,
  populated by `kwsbench checkpoints import DIR` or `kwsbench checkpoints fetch`.
- `location: project` (weights the project trains): files beside the manifest, `checkpoints/<manifest>/<id>`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kwsbench import paths
from kwsbench.errors import BadInputError, CheckpointError, DownloadError
from kwsbench.fetch import download, sha256_file
from kwsbench.records import build, limits, read_yaml

if TYPE_CHECKING:
    import torch  # imported where weights are read or written: listing manifests (leaderboard, --help) needs none

DEFAULT_URL_BASE = "https://raw.githubusercontent.com"
# The raw-file URL of a file of a public GitHub repository at one commit.
URL_TEMPLATE = "{base}/{repository}/{commit}/{path}"


@dataclass(frozen=True)
class KeyRename:
    """Rename state-dict keys starting with `prefix_from` to start with `prefix_to` instead."""

    prefix_from: str
    prefix_to: str


# converter name -> "module:function(source, provenance) -> (state dict, metadata)"; imported only when it runs
CONVERTERS = {"kwt-tflite": "kwsbench.models.kwt:convert_tflite"}


@dataclass(frozen=True)
class ConvertSpec:
    """The entry's file is made by converting a published file of another format (e.g. TensorFlow Lite)."""

    converter: str = field(metadata=limits(choices=tuple(CONVERTERS)))
    # the source file's path inside an import folder, e.g. "KWT-1/non_stream.tflite"
    file: str = field(metadata=limits(check=lambda v: "" if v else "must name the source file"))
    # of the source file: anything else is refused before conversion
    sha256: str = field(metadata=limits(check=lambda v: "" if re.fullmatch(r"[0-9a-fA-F]{64}", v)
                                        else "must be 64 hex digits"))
    size: int | None = field(default=None, metadata=limits(lo=0))


@dataclass(frozen=True)
class CheckpointEntry:
    id: str  # path relative to the manifest's storage folder, e.g. "NanoMamba-NC-20K/best.pt"
    model: str  # model card name (or alias)
    sha256: str
    size: int | None = None
    source_path: str | None = None  # path inside the public repository
    commit: str | None = None  # repository commit the file is taken from
    key_map: tuple[KeyRename, ...] = ()
    epoch: int | None = None
    val_acc: float | None = None
    note: str = ""
    labels: tuple[str, ...] = ()  # the classes the weights predict, in order (project-trained files record them)
    quick: bool = True  # part of `kwsbench run --quick` (project manifests mark the models too slow for it)
    # False: training did not get past chance (the manifest says so); such weights run only when named
    learned: bool = True
    protocol: str = ""  # the data a project-trained file was trained on (e.g. v2-12-official-mini)
    convert: ConvertSpec | None = None  # set when the file is converted from a published file of another format


@dataclass(frozen=True)
class UnshippedRun:
    """A training the project ran and measured whose weights file is not shipped (too large for the package):
    what it reached, how to make it again, and the sha256 of the file that run wrote (its metadata holds the
    run's own paths, so a rerun gives a file with another sha256)."""

    model: str = field(metadata=limits(nonempty=True))
    protocol: str = field(metadata=limits(nonempty=True))
    recipe: str = field(metadata=limits(nonempty=True))
    command: str = field(metadata=limits(check=lambda v: "" if v.startswith("kwsbench train ")
                                         else "must be the `kwsbench train ...` command that makes the file"))
    epoch: int = field(metadata=limits(lo=1))  # the best validation epoch, the one the file holds
    epochs: int = field(metadata=limits(lo=1))  # epochs the run completed
    val_acc: float = field(metadata=limits(lo=0, hi=100))
    sha256: str = field(metadata=limits(check=lambda v: "" if re.fullmatch(r"[0-9a-fA-F]{64}", v)
                                        else "must be 64 hex digits"))
    size: int = field(metadata=limits(lo=1))
    train_seconds: float = field(metadata=limits(lo=0))
    schedule_vs_paper: str = ""
    note: str = ""


@dataclass(frozen=True)
class Manifest:
    name: str
    path: Path  # the YAML file
    location: str  # "home" or "project"
    entries: tuple[CheckpointEntry, ...]
    repository: str | None = None
    commit: str | None = None
    licence: str = ""
    description: str = ""
    unshipped: tuple[UnshippedRun, ...] = ()  # measured trainings whose files are not shipped

    def folder(self) -> Path:
        """Where this manifest's files live."""
        if self.location == "project":
            return self.path.parent / self.name
        return paths.checkpoint_home() / self.name

    def file_path(self, entry: CheckpointEntry) -> Path:
        return self.folder() / entry.id

    def entry(self, file_id: str) -> CheckpointEntry:
        for e in self.entries:
            if e.id == file_id:
                return e
        known = ", ".join(e.id for e in self.entries)
        raise CheckpointError(f"manifest {self.path} has no checkpoint {file_id!r}. Known: {known}")

    def source_url(self, entry: CheckpointEntry, url_base: str = DEFAULT_URL_BASE) -> str:
        repository, commit = self.repository, entry.commit or self.commit
        if not (repository and commit and entry.source_path):
            raise DownloadError(
                f"checkpoint {self.name}:{entry.id} has no public source in {self.path} "
                "(repository, commit and source_path are needed to fetch it)"
            )
        return URL_TEMPLATE.format(base=url_base.rstrip("/"), repository=repository, commit=commit,
                                   path=entry.source_path)


# ---------------------------------------------------------------------------------------------
# manifests


def manifest_dir() -> Path:
    """Where `train --publish` records project weights: `KWSBENCH_MANIFESTS`, else kwsbench's checkpoints/."""
    return paths.user_manifests_dir() or paths.packaged("checkpoints")


def manifest_dirs() -> list[Path]:
    """Where manifests are read, a later folder's manifest replacing an earlier one of the same name: the packaged
    checkpoints/ (manifests and the project's small weights), then the user's `KWSBENCH_MANIFESTS` folder."""
    base, user = paths.packaged("checkpoints"), paths.user_manifests_dir()
    return [base] if user is None or user.resolve() == base.resolve() else [base, user]


@dataclass(frozen=True)
class EntryFile:
    """The checked fields of a manifest entry as written; other keys (how a project file was made: command,
    seed, fingerprints...) are provenance, kept in the YAML and not read here."""

    id: str = field(metadata=limits(nonempty=True))
    model: str = field(metadata=limits(nonempty=True))
    sha256: str = field(metadata=limits(check=lambda v: "" if re.fullmatch(r"[0-9a-fA-F]{64}", v)
                                        else "must be 64 hex digits"))
    size: int | None = field(default=None, metadata=limits(lo=0))
    source_path: str | None = None
    commit: str | int | None = None  # YAML reads an all-digit commit as a number
    key_map: list[dict[str, str]] = field(default_factory=list)
    epoch: int | None = None
    val_acc: float | None = None
    note: str | None = None
    labels: list[str] = field(default_factory=list)
    quick: bool = True
    learned: bool = True
    protocol: str | None = None
    convert: ConvertSpec | None = None


_ENTRY_KEYS = {f.name for f in dataclasses.fields(EntryFile)}


@dataclass(frozen=True)
class ManifestFile:
    files: list[Any]
    name: str | None = None
    location: str = field(default="home", metadata=limits(choices=("home", "project"), help="pick home or project"))
    source: dict[str, str | int | None] = field(default_factory=dict)
    licence: str | None = None
    description: str | None = None
    unshipped: list[Any] = field(default_factory=list)


def _entry_from_dict(raw: Any, where: Path, index: int = 0) -> CheckpointEntry:
    at = f"checkpoint manifest {where} entry {index + 1}"
    if not isinstance(raw, dict):
        raise BadInputError(f"{at}: must be a mapping of keys, got {raw!r}")
    e = build(EntryFile, {k: v for k, v in raw.items() if k in _ENTRY_KEYS}, at)
    renames = []
    for i, r in enumerate(e.key_map):
        if set(r) != {"from", "to"}:
            raise BadInputError(f"{at}: key_map[{i}] must be {{from: PREFIX, to: PREFIX}}, got {r!r}")
        renames.append(KeyRename(r["from"], r["to"]))
    return CheckpointEntry(
        id=e.id, model=e.model, sha256=e.sha256.lower(), size=e.size, source_path=e.source_path,
        commit=None if e.commit is None else str(e.commit), key_map=tuple(renames), epoch=e.epoch,
        val_acc=e.val_acc, note=e.note or "", labels=tuple(e.labels), quick=e.quick, learned=e.learned,
        protocol=e.protocol or "",
        convert=dataclasses.replace(e.convert, sha256=e.convert.sha256.lower()) if e.convert else None,
    )


# Parsed manifests by file identity (path, inode, mtime, size): a command may ask for the manifests several times,
# and parsing and checking ~150 entries is most of what a fast command does; a rewritten file is read again.
_PARSED: dict[tuple[str, int, int, int], Manifest] = {}


def _read_manifest_once(path: Path) -> Manifest:
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)
    if key not in _PARSED:
        _PARSED[key] = read_manifest(path)
    return _PARSED[key]


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    m = build(ManifestFile, read_yaml(path, "checkpoint manifest"), f"checkpoint manifest {path}")
    return Manifest(
        name=m.name or path.stem, path=path, location=m.location,
        entries=tuple(_entry_from_dict(e, path, i) for i, e in enumerate(m.files)),
        repository=None if m.source.get("repository") is None else str(m.source["repository"]),
        commit=None if m.source.get("commit") is None else str(m.source["commit"]),
        licence=m.licence or "", description=m.description or "",
        unshipped=tuple(build(UnshippedRun, u, f"checkpoint manifest {path} unshipped run {i + 1}")
                        for i, u in enumerate(m.unshipped)),
    )


def manifests(folder: Path | None = None) -> dict[str, Manifest]:
    """Every manifest by name: of `folder` alone when given, else of `manifest_dirs()` (a user folder that does
    not exist yet holds none; `train --publish` creates it)."""
    found: dict[str, Manifest] = {}
    for directory in [folder] if folder is not None else manifest_dirs():
        found.update((m.name, m) for m in (_read_manifest_once(p) for p in sorted(directory.glob("*.yaml"))))
    return found


def get_manifest(name: str) -> Manifest:
    known = manifests()
    if name not in known:
        where = ", ".join(str(d) for d in manifest_dirs())
        raise CheckpointError(f"no checkpoint manifest {name!r} in {where}; use one of the known ones: "
                              f"{', '.join(known)}")
    return known[name]


def record_checkpoint(manifest: str, file_id: str, model: str, **meta: Any) -> CheckpointEntry:
    """Add or update the entry of a project-trained file (already written to checkpoints/<manifest>/<id>).

    Creates `checkpoints/<manifest>.yaml` with `location: project` if absent; sha256 and size are
    measured from the file, so the manifest always matches what is on disk.
    """
    path = manifest_dir() / f"{manifest}.yaml"
    weights = path.parent / manifest / file_id
    if not weights.is_file():
        raise CheckpointError(f"{weights} does not exist; save the weights there before recording them")
    entry = {"id": file_id, "model": model, "sha256": sha256_file(weights), "size": weights.stat().st_size, **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.with_name(f".{path.name}.lock")):  # trainings publishing at once must not lose entries
        raw = yaml.safe_load(path.read_text()) if path.exists() else {
            "name": manifest, "location": "project", "licence": "trained by kwsbench (project licence)", "files": []}
        if raw.get("location") != "project":
            raise CheckpointError(f"manifest {path} is not a project manifest; trained weights go in a project one")
        raw["files"] = [e for e in raw["files"] if e.get("id") != file_id] + [entry]
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
        os.replace(tmp, path)
    return _entry_from_dict(entry, path)


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """An advisory lock held for the block (POSIX flock), so read-modify-write of a manifest is atomic."""
    import fcntl

    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# hashing and resolution


@dataclass(frozen=True)
class Resolved:
    path: Path
    manifest: Manifest | None
    entry: CheckpointEntry | None
    reference: str = ""


def _missing_message(manifest: Manifest, entry: CheckpointEntry, path: Path) -> str:
    if manifest.location == "project":
        return (f"checkpoint {manifest.name}:{entry.id} not found at {path}. It is trained by the project: "
                f"run `kwsbench train {entry.model}` (or restore the file).")
    return (f"checkpoint {manifest.name}:{entry.id} not found at {path}. Run `kwsbench checkpoints import DIR` "
            f"(DIR = a local copy of {manifest.repository or 'the source'}) or `kwsbench checkpoints fetch"
            f"{'' if manifest.name == 'nc-ssm' else ' --manifest ' + manifest.name} {entry.id}`; set "
            f"KWSBENCH_CHECKPOINTS to use another folder. {_project_weights_hint(entry.model)}").strip()


def _entry_by_sha(sha: str) -> tuple[Manifest, CheckpointEntry] | None:
    for m in manifests().values():
        for e in m.entries:
            if e.sha256 == sha:
                return m, e
    return None


def resolve_checkpoint(reference: str | Path) -> Resolved:
    """'<manifest>:<id>', or a path to a file. Raises CheckpointError when the file is missing."""
    ref = str(reference)
    if ":" in ref and not Path(ref).exists():
        name, file_id = ref.split(":", 1)
        manifest = get_manifest(name)
        entry = manifest.entry(file_id)
        path = manifest.file_path(entry)
        if not path.is_file():
            raise CheckpointError(_missing_message(manifest, entry, path))
        return Resolved(path, manifest, entry, ref)
    path = Path(ref).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {ref!r} is neither '<manifest>:<id>' nor an existing file. "
            "See `kwsbench checkpoints list`.")
    known = _entry_by_sha(sha256_file(path))
    if known:
        return Resolved(path, known[0], known[1], ref)
    return Resolved(path, None, None, ref)


def _card(name_or_card: Any):
    from kwsbench.models.registry import ModelCard, get_card

    return name_or_card if isinstance(name_or_card, ModelCard) else get_card(str(name_or_card))


def _default_reference(card: Any, checkpoint: str | Path | None) -> str | Path:
    if checkpoint is not None:
        return checkpoint
    if not card.checkpoint:
        raise CheckpointError(
            f"model {card.name!r} has no default checkpoint (no public weights). {_project_weights_hint(card.name)}"
            f"Train it with `kwsbench train {card.name}`, or give a file in a plan YAML "
            f"(`checkpoints: {{{card.name}: FILE}}`, `kwsbench run --config PLAN`).")
    return card.checkpoint


def _project_weights_hint(model: str) -> str:
    """The project manifests that ship weights for `model`, as the `kwsbench run` flag that uses them: the user who
    named a model without public weights is usually one flag away from a run."""
    names = [m.name for m in manifests().values()
             if m.location == "project" and any(e.model == model and e.learned for e in m.entries)]
    if not names:
        return ""
    flags = " or ".join(f"`--weights {n}`" for n in names)
    return f"The project ships weights for it: run with {flags}. "


def checkpoint_sha256(name_or_card: Any, checkpoint: str | Path | None = None) -> str:
    """sha256 of the file `load_model(name_or_card, checkpoint)` loads (the key of every result cell)."""
    return sha256_file(resolve_checkpoint(_default_reference(_card(name_or_card), checkpoint)).path)


# ---------------------------------------------------------------------------------------------
# safe loading


def verify(resolved: Resolved) -> str:
    """Check the sha256 against the manifest (if the file is in one); returns the file's sha256."""
    sha = sha256_file(resolved.path)
    entry = resolved.entry
    if entry is not None and sha != entry.sha256:
        where = resolved.manifest.path if resolved.manifest else "the manifest"
        raise CheckpointError(
            f"checkpoint {resolved.path} has sha256 {sha[:16]}…, but {where} expects {entry.sha256[:16]}… "
            f"for {entry.id}. The file is corrupt or a different version: delete it and run "
            "`kwsbench checkpoints import DIR` or `kwsbench checkpoints fetch` again.")
    return sha


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _refused_global(err: BaseException) -> str:
    """The 'Unsupported global: GLOBAL x.y' line of torch's weights-only refusal, if any."""
    lines = [ln.strip() for ln in str(err).splitlines() if "Unsupported global" in ln]
    return lines[0].split("Unsupported global:")[-1].split(" was not")[0].strip()[:120] if lines else ""


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The object a checkpoint file holds, unpickled with `weights_only=True` (the one place kwsbench reads a
    checkpoint file): a file that is not a torch checkpoint, or that would run code, raises CheckpointError."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not _refused_global(err):
            raise CheckpointError(f"{path} is not a torch checkpoint (bad pickle data: {_first_line(err)}). "
                                  "Check the file, or import / fetch it again.") from err
        # weights_only refuses any global outside torch's allow-list: this is the code-executing case.
        raise CheckpointError(
            f"{path} is not a plain-data checkpoint: it would execute code or build arbitrary objects when "
            f"unpickled, and kwsbench refuses it (loaded with weights_only=True). Only use weights from a "
            f"trusted source; re-save them as a state dict of tensors. Refused: {_refused_global(err)}"
        ) from err
    except Exception as err:  # noqa: BLE001 - torch raises many types (IndexError, KeyError, ...) on garbage
        raise CheckpointError(
            f"{path} is not a torch checkpoint (could not read it: {_first_line(err)}). "
            "Check the file, or import / fetch it again.") from err


def read_weights(path: str | Path, map_location: str | torch.device = "cpu"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of a checkpoint unpickled with `weights_only=True`; the metadata is what a
    kwsbench training checkpoint carries beside its tensors ({} for a bare state dict)."""
    import torch

    obj = read_payload(path, map_location)
    state = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(
            f"{path} holds no state dict (expected a dict of tensors, or a dict with 'model_state_dict').")
    meta = obj.get("metadata") if "model_state_dict" in obj else None
    return state, meta if isinstance(meta, dict) else {}


def trained_on_this_set(reference: str | Path | None, clip_protocol: str) -> str:
    """A warning when a project-trained checkpoint was trained on a split of the set being evaluated (its
    training protocol names that set's, e.g. v2-12-official-mini from v2-12-official), else ''."""
    ref = str(reference or "")
    if ":" not in ref or Path(ref).exists():
        return ""
    name, file_id = ref.split(":", 1)
    known = manifests()  # an unknown manifest is the loader's error to report, not this check's
    entry = next((e for e in known[name].entries if e.id == file_id), None) if name in known else None
    if entry is None or not entry.protocol or not entry.protocol.startswith(clip_protocol):
        return ""
    return (f"{ref} was trained on a split of this test set (protocol {entry.protocol}): its accuracy here "
            "includes its own training clips and is not a test result")


def checkpoint_labels(resolved: Resolved, metadata: dict[str, Any]) -> tuple[str, ...]:
    """The classes a checkpoint predicts, where it says: its manifest entry, else its own training metadata."""
    if resolved.entry is not None and resolved.entry.labels:
        return resolved.entry.labels
    labels = metadata.get("labels")
    return tuple(str(x) for x in labels) if isinstance(labels, list) else ()


def apply_key_map(state: dict[str, torch.Tensor], renames: Iterable[KeyRename]) -> dict[str, torch.Tensor]:
    """Apply declared prefix renames (first matching rule wins); keys matching no rule are kept."""
    renames = tuple(renames)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        rule = next((r for r in renames if key.startswith(r.prefix_from)), None)
        new = rule.prefix_to + key[len(rule.prefix_from):] if rule else key
        if new in out:
            raise CheckpointError(f"key map turns two keys into {new!r}; fix key_map in the manifest")
        out[new] = value
    return out


def _few(keys: Iterable[str], n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n} more)" if len(keys) > n else "")


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Strict load with an error that names the file and a few offending keys."""
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        parts = [f"missing keys: {_few(missing)}" if missing else "", f"unexpected keys: {_few(unexpected)}"
                 if unexpected else ""]
        raise CheckpointError(
            f"{path} does not fit model {type(model).__name__}: " + "; ".join(p for p in parts if p)
            + ". Wrong checkpoint for this model, or a key rename that must be declared (key_map) in its "
            "manifest. kwsbench never loads non-strictly.")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in model.state_dict().items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(
            f"{path} does not fit model {type(model).__name__}: {len(wrong)} tensor(s) of another shape "
            f"(checkpoint vs model), e.g. {'; '.join(wrong[:3])}. It is the checkpoint of another model size; "
            "see `kwsbench checkpoints list` for which model each file belongs to.")
    model.load_state_dict(state, strict=True)


@dataclass(frozen=True)
class LoadedModel:
    """A model with verified weights: the module (eval mode, on the device), the sha256 of the file it was
    loaded from (the key of every result cell) and the classes it predicts where the checkpoint says so
    (its manifest entry or training metadata; () when only the card's class count is known)."""

    module: torch.nn.Module
    sha256: str
    labels: tuple[str, ...] = ()


def load_model(name_or_card: Any, checkpoint: str | Path | None = None,
               device: str | torch.device = "cpu") -> LoadedModel:
    """Build the card's model, load its verified weights strictly, move to `device`, eval mode.

    `checkpoint`: None (the card's default), '<manifest>:<id>', or a file path (verified when its
    sha256 appears in a manifest; the key map of that entry is applied).
    """
    card = _card(name_or_card)
    resolved = resolve_checkpoint(_default_reference(card, checkpoint))
    sha = verify(resolved)
    # read onto the host: the model is built there and moved once. Read straight onto a GPU, every tensor was
    # copied there, back into the host-built module (a copy that waits for the device), and there again.
    state, metadata = read_weights(resolved.path, map_location="cpu")
    if resolved.entry is not None:
        state = apply_key_map(state, resolved.entry.key_map)
    labels = checkpoint_labels(resolved, metadata)
    model = card.build(num_classes=len(labels) if labels else None)
    load_state_strict(model, state, resolved.path)
    return LoadedModel(module=model.to(device).eval(), sha256=sha, labels=labels)


# ---------------------------------------------------------------------------------------------
# status, import, fetch


@dataclass
class FileStatus:
    manifest: str
    entry: CheckpointEntry
    path: Path
    present: bool
    ok: bool | None = None  # None: not checked


def status(check: bool = False, names: Iterable[str] | None = None) -> list[FileStatus]:
    out = []
    for m in manifests().values():
        if names is not None and m.name not in set(names):
            continue
        for e in m.entries:
            p = m.file_path(e)
            present = p.is_file()
            ok = (sha256_file(p) == e.sha256) if (check and present) else None
            out.append(FileStatus(m.name, e, p, present, ok))
    return out


def _atomic_copy_verified(src: Path, dst: Path, sha: str) -> bool:
    """Copy to a temporary name in the target folder, verify, then rename; False if the sha differs."""
    paths.make_folder(dst.parent, "checkpoints (KWSBENCH_CHECKPOINTS sets where they go)")
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        if sha256_file(tmp) != sha:
            return False
        os.replace(tmp, dst)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # found, but sha256 differs: not copied
    missing: list[str] = field(default_factory=list)


def import_dir(source: str | Path, manifest: str = "nc-ssm") -> ImportReport:
    """Copy the manifest's files from a local folder: `<Folder>/<file>` or repository layout
    `checkpoints_full/<Folder>/<file>`. Every copy is verified; a mismatching file is not copied.
    An entry with a `convert` spec is made from its published source file (verified first) by its converter."""
    source = Path(source).expanduser()
    if not source.is_dir():
        raise CheckpointError(f"import source {source} is not a folder (give a clone of the repository or a "
                              "folder with <Folder>/<file>.pt)")
    m = get_manifest(manifest)
    report = ImportReport()
    for e in m.entries:
        dst = m.file_path(e)
        if dst.is_file() and sha256_file(dst) == e.sha256:
            report.already.append(e.id)
            continue
        names = [e.convert.file] if e.convert else [e.id]
        candidates = [source / n for n in names] + ([source / e.source_path] if e.source_path else [])
        src = next((c for c in candidates if c.is_file()), None)
        if src is None:
            report.missing.append(e.id)
        elif e.convert:
            problem = _convert_verified(m, e, src, dst)
            (report.mismatched.append(f"{e.id} ({problem})") if problem else report.imported.append(e.id))
        elif _atomic_copy_verified(src, dst, e.sha256):
            report.imported.append(e.id)
        else:
            report.mismatched.append(f"{e.id} ({src}: sha256 differs from the manifest)")
    licence = next((p for p in (source / "LICENSE.txt", source / "LICENSE") if p.is_file()), None)
    if licence and (report.imported or report.already):
        # The licence must travel with the weights (its terms require keeping the notice).
        shutil.copyfile(licence, m.folder() / "LICENSE.txt")
    return report


def import_found(source: str | Path) -> dict[str, ImportReport]:
    """`import_dir` for every public (`location: home`) manifest with at least one of its files in `source`."""
    reports = {name: import_dir(source, name) for name, m in manifests().items() if m.location == "home"}
    found = {n: r for n, r in reports.items() if r.imported or r.already or r.mismatched}
    if not found:
        raise CheckpointError(f"no checkpoint of any manifest ({', '.join(reports)}) found in {source}; give the "
                              "folder holding <Folder>/<file> (or a repository clone), or name --manifest")
    return found


def save_weights(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """A weights file kwsbench loads: tensors + JSON metadata, written to a temporary name and renamed."""
    import json

    import torch

    path = Path(path)
    payload = {"model_state_dict": {k: v.detach().cpu().contiguous() for k, v in state.items()},
               "metadata": json.loads(json.dumps(metadata))}  # fails here on anything not JSON-able
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # in memory: torch names the archive after a file, which would change the bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def _convert_verified(m: Manifest, e: CheckpointEntry, src: Path, dst: Path) -> str:
    """Convert `src` (checked against the manifest's source sha256 first) into `dst`; '' or what went wrong."""
    import importlib

    spec = e.convert
    sha = sha256_file(src)
    if sha != spec.sha256:
        return (f"{src} has sha256 {sha[:16]}…, the manifest's source is {spec.sha256[:16]}…: another file or "
                "version, refused before conversion")
    module, function = CONVERTERS[spec.converter].split(":")
    provenance = {"source": {"repository": m.repository, "commit": e.commit or m.commit, "path": e.source_path,
                             "sha256": spec.sha256, "size": spec.size, "licence": m.licence}}
    with tempfile.TemporaryDirectory(dir=_mkdir(dst.parent)) as tmp:
        out = Path(tmp) / dst.name
        save_weights(out, *getattr(importlib.import_module(module), function)(src, provenance))
        got = sha256_file(out)
        if got != e.sha256:
            return (f"converting {src} gave sha256 {got[:16]}…, the manifest expects {e.sha256[:16]}… "
                    "(another torch version writes other bytes: use the pinned one)")
        os.replace(out, dst)
    return ""


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_OFFLINE = "Check the network or --url-base; `kwsbench checkpoints import DIR` works offline from a local copy."


def fetch(ids: Iterable[str] | None = None, manifest: str = "nc-ssm", url_base: str = DEFAULT_URL_BASE,
          progress: Callable[[str, int, int | None], None] | None = None) -> list[str]:
    """Download the listed checkpoint ids (all when None) from their public source; returns fetched ids.

    Files already present with the right sha256 are skipped. A file is written under a temporary name
    and renamed only after its sha256 verified, so a failed download never leaves a file looking good.
    """
    m = get_manifest(manifest)
    # Ids may be given bare ("X/best.pt") or qualified ("nc-ssm:X/best.pt"), as cards name them.
    wanted = [m.entry(i.removeprefix(f"{m.name}:")) for i in ids] if ids else list(m.entries)
    fetched = []
    for e in wanted:
        dst = m.file_path(e)
        if dst.is_file() and sha256_file(dst) == e.sha256:
            continue
        url = m.source_url(e, url_base)
        show = (lambda d, t, i=e.id: progress(i, d, t)) if progress else None
        if e.convert is None:
            download(url, dst, e.sha256, resume=False, size=e.size, progress=show, offline_hint=_OFFLINE)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / Path(e.convert.file).name
                download(url, src, e.convert.sha256, resume=False, size=e.convert.size, progress=show,
                         offline_hint=_OFFLINE)
                problem = _convert_verified(m, e, src, dst)
                if problem:
                    raise CheckpointError(f"checkpoint {m.name}:{e.id}: {problem}")
        fetched.append(e.id)
    return fetched


@dataclass(frozen=True)
class WeightsFile:
    """One checkpoint a manifest has for a model, and whether its file is here (home manifests need an import)."""

    manifest: str
    id: str
    present: bool
    learned: bool


def weights_by_model() -> dict[str, list[WeightsFile]]:
    """Every manifest's checkpoints, by model card name (manifest order, then file order)."""
    out: dict[str, list[WeightsFile]] = {}
    for m in manifests().values():
        for e in m.entries:
            out.setdefault(e.model, []).append(WeightsFile(m.name, e.id, m.file_path(e).is_file(), e.learned))
    return out
