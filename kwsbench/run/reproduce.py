"""Reproduce: run the published checkpoints, then judge every stored cell against the papers' rows.

Running is the runner's; judging is `results.judge` (the same function the HTML report calls), built on
`results.verdicts` (pure functions of stored cells and baseline rows) and `results.bridge` (the post-stratified
estimate of another protocol's accuracy). A row of a protocol
the measured data does not hold is bridged where `baselines/protocols/` records both compositions: the
runner then also evaluates the silence items the reported protocol builds (background-noise crops, or
all-zero audio) so that every stratum's recall is measured.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from kwsbench.data.clipset import KEYWORDS_10, ClipSet
from kwsbench.errors import EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, DatasetError
from kwsbench.paths import default_store
from kwsbench.results.baselines import ProtocolPrior, Reported, load_baselines, load_protocol_priors
from kwsbench.results.judge import judge
from kwsbench.results.store import StoredCell
from kwsbench.results.verdicts import DEVIATING, JUDGED, NOT_COMPARABLE, Comparison, matching_rows

NCSSM_NOISES = ("factory-ncssm", "white-ncssm", "babble-synthetic-ncssm", "street-ncssm", "pink-ncssm")
PUBLIC_MANIFESTS = ("nc-ssm", "kwt")  # manifests of published checkpoints (the project's own synth weights are not)
# in the default model set, a model of these manifests whose weights are not imported is left out with a note
OPTIONAL_MANIFESTS = ("kwt",)
# --quick: the models whose authors measured their own checkpoints on the test split (eval_results.json), the
# unknown clips (their term dominates the all-unknown protocol's variance) and a keyword and silence sample
QUICK_MODELS = ("ds-cnn-s", "bc-resnet-1-ncssm", "nc-ssm", "nc-ssm-20k")
# clips per class: every unknown clip of the canonical set (408; the full archive's 6,931 would cost minutes)
QUICK_CAPS = {**{k: 40 for k in KEYWORDS_10}, "silence": 40, "unknown": 408}
QUICK_SILENCE_CROPS = 50  # the first crops of the all-unknown rule (its silence weight is 4 %)
DEFAULT_NOISE = "factory-ncssm"
# --full: every noisy condition under these noise seeds, so each cell shows its seed spread (README: the cost)
FULL_SEEDS = (0, 1, 2)
DATASETS = ("gsc-v2", "gsc-v2-test")  # the downloads reproduce looks for in the data home, in this order
# the archive that holds each published protocol as files (`kwsbench data download NAME`)
PROTOCOL_ARCHIVES = {"v2-12-official": "gsc-v2-test", "v2-12-all-unknown": "gsc-v2", "v2-35": "gsc-v2",
                     "v2-10": "gsc-v2"}


@dataclass
class ReproduceOptions:
    models: list[str] | None = None
    data_dir: str | None = None
    protocol: str | None = None
    noise_type: str | None = None  # None: factory-ncssm, or clean only under --quick
    snr: list[float] = field(default_factory=lambda: [0.0])
    full: bool = False
    quick: bool = False
    tol: float = 2.0
    seed: int = 0
    seeds: list[int] | None = None  # noise seeds of every noisy condition (None: FULL_SEEDS under --full, else seed)
    batch_size: int = 256
    device: str = "cpu"
    store: str = field(default_factory=lambda: str(default_store()))  # $KWSBENCH_STORE or runs/kwsbench.sqlite
    force: bool = False
    baselines: str | None = None  # folder of baseline YAML files (default: the project's baselines/)
    noise_dir: str | None = None  # the background-noise recordings (silence items of v2-12-all-unknown)
    weights: str | None = None  # a project manifest: judge its weights instead of the published checkpoints


@dataclass
class ReproduceReport:
    comparisons: list[tuple[StoredCell, Comparison]]
    unmatched: list[StoredCell]  # measured cells no paper reports
    failed: list[tuple[str, str, str]]
    clips: int
    seconds: float
    protocol: str
    data_dir: str = ""
    silence: dict[str, str] = field(default_factory=dict)  # bridged protocol -> how its silence was measured
    advice: list[str] = field(default_factory=list)  # commands that make more rows comparable

    @property
    def deviates(self) -> list[tuple[StoredCell, Comparison]]:
        return [(c, v) for c, v in self.comparisons if v.verdict in DEVIATING]

    @property
    def judged(self) -> list[tuple[StoredCell, Comparison]]:
        return [(c, v) for c, v in self.comparisons if v.verdict in JUDGED]

    def exit_code(self) -> int:
        if self.deviates or self.failed:
            return EXIT_FAILED
        return EXIT_OK if self.judged else EXIT_INCONCLUSIVE

    def summary(self) -> str:
        """One sentence saying what the result means."""
        judged, dev = self.judged, self.deviates
        bridged = sum(v.bridged for _, v in judged)
        head = (f"{len(dev)} of {len(judged)} comparable rows deviate beyond tolerance" if judged
                else "no published row could be judged (INCONCLUSIVE)")
        if bridged:
            head += f" ({bridged} judged through a bridge, marked *)"
        need: dict[str, int] = {}
        validation = 0
        for _, v in self.comparisons:
            if v.verdict != NOT_COMPARABLE:
                continue
            if v.reported.split != "test":
                validation += 1
            elif any(r.startswith("protocol:") for r in v.reasons):
                need[v.reported.protocol] = need.get(v.reported.protocol, 0) + 1
        parts = [head] + [f"{n} rows need protocol {p}" for p, n in sorted(need.items())]
        if validation:
            parts.append(f"{validation} rows are validation-split numbers, which no test measurement is compared with")
        if self.failed:
            parts.append(f"{len(self.failed)} cells failed")
        return "; ".join(parts) + "."


def public_models() -> list[str]:
    from kwsbench.models.registry import all_cards

    return [c.name for c in all_cards() if c.checkpoint and c.checkpoint.split(":", 1)[0] in PUBLIC_MANIFESTS]


def command_line(opts: ReproduceOptions, data_dir: str | None = None, protocol: str | None = None) -> str:
    """`python reproduce.py` with the options that differ from the defaults (data dir and protocol replaced)."""
    base = ReproduceOptions()
    words = ["python", "reproduce.py"]
    if opts.quick or opts.full:
        words.append("--quick" if opts.quick else "--full")
    if opts.models:
        words += ["--models", ",".join(opts.models)]
    pairs = (("--noise-type", "noise_type"), ("--tol", "tol"), ("--seed", "seed"), ("--batch-size", "batch_size"),
             ("--device", "device"), ("--store", "store"), ("--baselines", "baselines"),
             ("--noise-dir", "noise_dir"), ("--weights", "weights"))
    for flag, name in pairs:
        if getattr(opts, name) != getattr(base, name):
            words += [flag, str(getattr(opts, name))]
    if opts.seeds:
        words += ["--seeds", ",".join(str(s) for s in opts.seeds)]
    if not opts.full and list(opts.snr) != base.snr:
        words += ["--snr", *[f"{s:g}" for s in opts.snr]]
    if data_dir:
        words += ["--data-dir", data_dir]
    if protocol:
        words += ["--protocol", protocol]
    return shlex.join(words)


def default_data_dir(opts: ReproduceOptions, cards=()) -> str:
    """The first Speech Commands set `kwsbench data download` put in the data home."""
    from kwsbench.data.download import COMPLETE_MARKER, default_dest
    from kwsbench.paths import shared_dir

    for name in DATASETS:
        if (default_dest(name) / COMPLETE_MARKER).is_file():
            return str(default_dest(name))
    dest = default_dest("gsc-v2-test")
    shared = shared_dir() / "data" / "gsc_v2_test_dev"
    team = (f"; or run on the shared folder's development half of it: `{command_line(opts, str(shared))}`"
            if shared.is_dir() else "")  # named only where it is there, so the command works as written
    raise DatasetError(
        f"no data set given and none downloaded in the kwsbench data home ({dest.parent}). Download the canonical "
        f"12-class test set (112 MB): `kwsbench data download gsc-v2-test`, then run `{command_line(opts, str(dest))}`"
        + team + _weights_too(opts, cards)
    )


def _weights_too(opts: ReproduceOptions, cards) -> str:
    """A fresh user lacks the weights as well as the data: say both at once, not one per attempt."""
    from kwsbench.errors import CheckpointError

    if opts.weights:  # a project manifest's weights: checked once the plan is built
        return ""
    try:
        _check_weights(cards, opts.device, {}, optional=not opts.models)
    except CheckpointError as err:
        return f"\nBefore that run, get the weights: {err}"
    return ""


def _check_weights(cards, device: str, checkpoints: dict[str, str], optional: bool) -> list[tuple[str, str]]:
    """Exit 3 before any work when a requested model has no loadable checkpoint; with `optional`, models of
    OPTIONAL_MANIFESTS without weights are returned (name, advice) instead."""
    from kwsbench import checkpoints as ck
    from kwsbench.errors import CheckpointError

    missing, skipped = [], []
    for card in cards:
        try:
            ck.load_model(card, checkpoint=checkpoints.get(card.name), device=device)
        except CheckpointError as err:
            manifest = (card.checkpoint or "").split(":", 1)[0]
            entry = (card.name, f"{str(err).rstrip('.')}{_import_hint(manifest)}")
            (skipped if optional and manifest in OPTIONAL_MANIFESTS else missing).append(entry)
    if missing:
        raise CheckpointError(_missing_weights_message(cards, checkpoints, missing))
    return skipped


def _missing_weights_message(cards, checkpoints: dict[str, str], missing: list[tuple[str, str]]) -> str:
    """One sentence per public manifest whose files are simply not there yet (the usual first-run case: one
    import or fetch command for all of them), one line per model for any other fault (wrong sha256, keys...)."""
    from kwsbench import checkpoints as ck

    absent: dict[str, list[tuple[str, str]]] = {}  # manifest -> [(model, file id)]
    others = []
    for name, why in missing:
        ref = checkpoints.get(name) or next(c.checkpoint for c in cards if c.name == name) or ""
        manifest, _, file_id = str(ref).partition(":")
        found = ck.manifests().get(manifest) if file_id else None
        if found and found.location != "project" and not found.file_path(found.entry(file_id)).is_file():
            absent.setdefault(manifest, []).append((name, file_id))
        else:
            others.append(f"  {name}: {why}")
    lines = [f"no usable checkpoint for {len(missing)} model(s):"]
    lines += [f"  {_absent_advice(ck.manifests()[manifest], entries)}" for manifest, entries in absent.items()]
    return "\n".join(lines + others)


def _absent_advice(manifest, entries: list[tuple[str, str]]) -> str:
    from kwsbench.paths import shared_dir

    models = ", ".join(n for n, _ in entries)
    where = (f"{models}: the {manifest.name} weights are not in {manifest.folder()} (KWSBENCH_CHECKPOINTS sets "
             "the folder).")
    shared = shared_dir() / "checkpoints" / manifest.name
    if shared.is_dir():  # named only where it is there, so the command works as written
        return f"{where} Import them: `kwsbench checkpoints import {shared}`."
    source = manifest.repository or "the source"
    flag = "" if manifest.name == "nc-ssm" else f" --manifest {manifest.name}"  # fetch's default manifest
    ids = " ".join(shlex.quote(i) for _, i in entries)
    return (f"{where} Download them: `kwsbench checkpoints fetch{flag} {ids}` (from {source}), or import a "
            f"local copy of {source}: `kwsbench checkpoints import DIR`.")


def _import_hint(manifest: str) -> str:
    """The import command for a public manifest, named only where its folder is there (it then works as written)."""
    from kwsbench.paths import shared_dir

    folder = shared_dir() / "checkpoints" / manifest
    return f". Import them: `kwsbench checkpoints import {folder}`." if manifest and folder.is_dir() else "."


def _clipset(opts: ReproduceOptions, data_dir: str) -> ClipSet:
    from kwsbench.data.speech_commands import load_clipset
    from kwsbench.data.subsets import capped_subset

    clipset = load_clipset(data_dir, protocol=opts.protocol)
    if opts.quick:
        clipset = capped_subset(clipset, QUICK_CAPS, opts.seed)
    return clipset


def _model_names(opts: ReproduceOptions) -> list[str]:
    from kwsbench.errors import CheckpointError

    if opts.models:
        return opts.models
    if opts.weights:
        from kwsbench.checkpoints import get_manifest

        return [e.model for e in get_manifest(opts.weights).entries]
    names = [m for m in public_models() if m in QUICK_MODELS] if opts.quick else public_models()
    if not names:
        raise CheckpointError("no model card points at a published checkpoint; pass --models")
    return names


def run_reproduce(opts: ReproduceOptions, show_progress: bool = True) -> ReproduceReport:
    """Evaluate the checkpoints under the asked conditions and compare with baselines/*.yaml."""
    from kwsbench.data.speech_commands import resolve_root
    from kwsbench.models.registry import all_cards, resolve
    from kwsbench.results.judge import check_tolerance
    from kwsbench.results.store import Store
    from kwsbench.run.plan import Plan, apply_weights
    from kwsbench.run.runner import run_plan

    check_tolerance(opts.tol)  # before any model work, not after it
    cards = resolve(_model_names(opts))
    data_dir = opts.data_dir or default_data_dir(opts, cards)
    resolve_root(data_dir, opts.protocol)  # DatasetError (exit 4) before any model work
    if opts.noise_dir:
        background_dir(opts.noise_dir, data_dir)  # the same for recordings that are not there
    if opts.full:
        noises, snrs = list(NCSSM_NOISES), [-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0]
    elif opts.quick and opts.noise_type is None:
        # clean only: on the development half no noisy row's interval gets below the tolerance (README)
        noises, snrs = [], []
    else:
        noises, snrs = [opts.noise_type or DEFAULT_NOISE], [float(s) for s in opts.snr]
    plan = apply_weights(Plan(models=[c.name for c in cards], noise=noises, snr=snrs, data_dir=data_dir,
                              protocol=opts.protocol, seed=opts.seed, seeds=run_seeds(opts),
                              batch_size=opts.batch_size, device=opts.device,
                              quick=opts.quick, store=opts.store, force=opts.force, weights=opts.weights,
                              noise_dir=opts.noise_dir).validate())
    skipped = _check_weights(cards, opts.device, plan.checkpoints, optional=not opts.models and not opts.weights)
    if skipped:
        left = {n for n, _ in skipped}
        cards = [c for c in cards if c.name not in left]
        plan.models = [c.name for c in cards]
    clipset = _clipset(opts, data_dir)
    folder = Path(opts.baselines) if opts.baselines else None
    baselines, priors = load_baselines(folder), load_protocol_priors(folder)
    aliases = {c.name: {c.name, *c.aliases} for c in all_cards()}
    plans = seed_plans(plan, opts, baselines, aliases)
    summaries = [run_plan(p, clipset=clipset, show_progress=show_progress) for p in plans]
    wanted = {k for s in summaries for k in s.cell_keys}
    with Store(plan.store) as store:
        cells = [c for c in store.cells() if c.cell_key in wanted]
    rows = [r for c in cells for r in matching_rows(baselines, aliases.get(c.model, {c.model}), c)]
    targets = sorted({r.protocol for r in rows
                      if r.protocol != clipset.protocol and r.protocol in priors and r.split == "test"})
    crops = QUICK_SILENCE_CROPS if opts.quick else None
    how = {}
    for p in plans:
        how |= _silence_cells(p, clipset, priors, targets, data_dir, run_plan, show_progress, crops)
    with Store(plan.store) as store:
        comparisons, unmatched = judge(store, cells, baselines, priors, opts.tol, aliases)
    failed = [f for s in summaries for f in s.failed]
    report = ReproduceReport(comparisons, unmatched, failed, summaries[0].clips, sum(s.seconds for s in summaries),
                             clipset.protocol, data_dir, how)
    report.advice = advice(report, opts, priors) + [f"{n} left out: {why}" for n, why in skipped]
    return report


def seed_plans(plan, opts: ReproduceOptions, baselines: list[Reported], aliases: dict[str, set[str]]) -> list:
    """--full without --seeds: the extra seeds only for the models a published noisy row judges (their seed spread
    serves a verdict); the others run their noisy conditions once, under --seed. Otherwise the plan as it is."""
    if not (opts.full and not opts.seeds and plan.seeds):
        return [plan]
    noisy = {r.model for r in baselines if r.noise != "clean"}
    seeded = [m for m in plan.models if aliases.get(m, {m}) & noisy]
    single = [m for m in plan.models if m not in seeded]
    out = [dataclasses.replace(plan, models=seeded)] if seeded else []
    if single:
        out.append(dataclasses.replace(plan, models=single, seeds=None, seed=opts.seed))
    return out


def run_seeds(opts: ReproduceOptions) -> list[int] | None:
    """The noise seeds of the run: --seeds, else FULL_SEEDS under --full, else None (--seed alone)."""
    if opts.seeds:
        return list(opts.seeds)
    return list(FULL_SEEDS) if opts.full else None


def _silence_cells(plan, clipset: ClipSet, priors: dict[str, ProtocolPrior], targets: list[str], data_dir: str,
                   run_plan, show_progress: bool, crops: int | None) -> dict[str, str]:
    """Evaluate the silence items each bridged protocol builds by its own rule, with the same models, conditions
    and seeds (stored as cells of `<protocol>:silence...`, where `results.judge` finds them). Returns, per
    protocol, how its silence was measured."""
    from kwsbench.data.speech_commands import silence_clipset, zero_silence_clipset

    measured = priors.get(clipset.protocol)
    how = {}
    for target in targets:
        rule = priors[target].silence
        if measured is not None and rule == measured.silence:
            how[target] = f"the data set's own silence clips ({rule})"
            continue
        if rule == "zeros":
            items = zero_silence_clipset()
            how[target] = "all-zero audio (the protocol's test-time silence)"
        elif rule == "background-crops" and (bg := background_dir(plan.noise_dir, data_dir)) is not None:
            items = silence_clipset(bg, count=crops)
            how[target] = f"{len(items)} crops of the background-noise recordings in {bg}"
        else:
            how[target] = "MISSING: " + _missing_silence(rule)
            continue
        # the run's provenance names where the silence items came from, not the user's clips
        source = str(items.meta.get("root", "")) or plan.data_dir
        run_plan(dataclasses.replace(plan, data_dir=source), clipset=items, show_progress=show_progress)
    return how


def _missing_silence(rule: str) -> str:
    if rule == "background-crops":
        return ("no background-noise recordings: pass --noise-dir with the six _background_noise_ recordings of "
                "Speech Commands (`kwsbench data download gsc-v2` fetches them); the silence term is bounded")
    return "the data set holds no silence items of this kind; the silence term is bounded"


def background_dir(noise_dir: str | None, data_dir: str) -> Path | None:
    """The background-noise recordings: --noise-dir, else the data set's or the downloaded full archive's
    _background_noise_ folder."""
    from kwsbench.data.download import default_dest
    from kwsbench.data.speech_commands import BACKGROUND_DIR

    candidates = [Path(noise_dir).expanduser()] if noise_dir else [
        Path(data_dir) / BACKGROUND_DIR, default_dest("gsc-v2") / BACKGROUND_DIR]
    for c in candidates:
        if c.is_dir() and any(p.suffix.lower() in (".wav", ".flac") for p in c.iterdir()):
            return c
    if noise_dir:
        raise DatasetError(f"--noise-dir {noise_dir} holds no .wav or .flac recordings; pass the folder of the six "
                           "Speech Commands _background_noise_ recordings (`kwsbench data download gsc-v2` has them)")
    return None


def advice(report: ReproduceReport, opts: ReproduceOptions, priors: dict[str, ProtocolPrior]) -> list[str]:
    """For each published protocol whose test-split rows stayed NOT_COMPARABLE: the archive that holds it, the
    command that downloads it and the command to run next (each works as written)."""
    from kwsbench.data.download import default_dest

    need: dict[str, int] = {}
    for _, v in report.comparisons:
        if v.verdict == NOT_COMPARABLE and v.reported.split == "test" and any(
                r.startswith("protocol:") for r in v.reasons):
            need[v.reported.protocol] = need.get(v.reported.protocol, 0) + 1
    lines = []
    for protocol, n in sorted(need.items()):
        archive = PROTOCOL_ARCHIVES.get(protocol) or (priors[protocol].archive if protocol in priors else None)
        if archive is None:
            lines.append(f"{n} rows use protocol {protocol}, which no archive kwsbench downloads holds")
            continue
        dest = str(default_dest(archive))
        explicit = protocol if protocol not in ("v2-12-official", "v2-12-all-unknown") else None
        lines.append(f"{n} rows use protocol {protocol}, held by the {archive} archive: run "
                     f"`kwsbench data download {archive}`, then `{command_line(opts, dest, explicit)}`")
    missing = sorted(p for p, h in report.silence.items() if h.startswith("MISSING") and "background" in h)
    if missing:
        shared = _shared_recordings()
        if shared is not None:  # the team's folder has them: no 2.3 GiB download needed
            with_noise = dataclasses.replace(opts, noise_dir=str(shared))
            lines.append(f"the silence term of {', '.join(missing)} is bounded, not measured: the recordings are "
                         f"in the shared folder, run `{command_line(with_noise, report.data_dir)}`")
        else:
            lines.append(f"the silence term of {', '.join(missing)} is bounded, not measured: run "
                         f"`kwsbench data download gsc-v2`, then `{command_line(opts, report.data_dir)}` "
                         "(or add --noise-dir with the six _background_noise_ recordings)")
    return lines


def _shared_recordings() -> Path | None:
    """The shared folder's copy of the _background_noise_ recordings ($KWSBENCH_SHARED/data/gsc_background_noise),
    named only where it holds recordings, so the advised command works as written."""
    from kwsbench.paths import shared_dir

    folder = shared_dir() / "data" / "gsc_background_noise"
    if folder.is_dir() and any(p.suffix.lower() in (".wav", ".flac") for p in folder.iterdir()):
        return folder
    return None
