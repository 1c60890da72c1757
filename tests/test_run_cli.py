"""`kwsbench run` as a user types it: --quick fills in and never overrides, --snr needs --noise, --seeds,
the default models and what is left out, the estimate, progress inside a slow cell, interrupted runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import RmsNoise, make_clipset, tiny_loader

from kwsbench import progress as progress_mod
from kwsbench.cli import build_parser, main
from kwsbench.commands.run import plan_from_args
from kwsbench.errors import EXIT_BAD_INPUT
from kwsbench.results.store import Store
from kwsbench.run.plan import NO_PUBLIC_WEIGHTS, Plan
from kwsbench.run.runner import run_plan

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.usefixtures("tiny_cards")  # the runner's stand-in cards, registered for each test only


def _plan(*argv: str):
    return plan_from_args(build_parser().parse_args(["run", *argv]))


def test_quick_fills_in_what_was_not_given_and_never_overrides_a_flag(tmp_path):
    plan, _ = _plan("--quick")
    assert (plan.noise, plan.snr, plan.per_class, plan.quick) == (["factory"], [0.0], 20, True)
    plan, _ = _plan("--quick", "--noise", "babble", "--snr", "-5")
    assert (plan.noise, plan.snr, plan.per_class) == (["babble"], [-5.0], 20)
    plan, _ = _plan("--quick", "--snr", "5", "10", "--per-class", "7")
    assert (plan.noise, plan.snr, plan.per_class) == (["factory"], [5.0, 10.0], 7)
    config = tmp_path / "plan.yaml"
    config.write_text("snr: [-10]\nnoise: white\n")
    plan, _ = _plan("--quick", "--config", str(config))
    assert (plan.noise, plan.snr, plan.per_class) == (["white"], [-10.0], 20)
    plan, _ = _plan("--noise", "babble", "--snr", "-5")  # without --quick nothing is filled in
    assert (plan.quick, plan.per_class, plan.snr) == (False, None, [-5.0])


def test_snr_without_noise_is_an_error_not_a_clean_only_run(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    assert main(["run", "--snr", "-5", "--store", str(store)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--snr was given without --noise" in err and "--noise babble --snr -5" in err
    assert not store.exists()  # nothing ran


def test_help_states_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    for action in run._actions:
        if action.help and action.dest not in ("help", "resume", "config") and action.option_strings:
            assert "default" in action.help, f"{action.option_strings[0]} does not state its default"
    assert "--seeds" in text


def test_default_run_names_the_models_it_leaves_out_and_why(monkeypatch, capsys):
    import dataclasses

    import kwsbench.run.plan as plan_mod
    import kwsbench.run.runner as runner
    from kwsbench.checkpoints import get_manifest

    def stop(*args, **kwargs):  # only what is said before the run starts matters here
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_plan", stop)
    entries = [dataclasses.replace(e, learned=False) if e.model == "s-edge-full" else e
               for e in get_manifest("synth").entries]  # as a manifest with an entry that did not learn
    monkeypatch.setattr(plan_mod, "_weight_entries", lambda name: entries)
    assert main(["run", "--noise", "babble", "--snr", "-5", "--store", "unused.sqlite"]) == 130
    err = capsys.readouterr().err
    assert "left out" in err and "s-edge-full: its weights did not learn" in err
    slow, = [line for line in err.splitlines() if "slow on a CPU" in line]  # one line per reason
    assert "bc-resnet-8" in slow and "s-edge-tiny" in slow
    names = slow.split(":")[0].strip().split(", ")
    assert names == sorted(names)  # in the manifest's order the S-Edge sizes were scattered among the others


def test_seeds_store_one_cell_per_seed_and_clean_once(tmp_path):
    plan, _ = _plan("--models", "test-tiny", "--noise", "white", "--snr", "-5", "10", "--seeds", "0,1,2",
                    "--store", str(tmp_path / "s.sqlite"))
    assert plan.seeds == [0, 1, 2] and plan.seed == 0
    class Recording(RmsNoise):
        asked: list = []

        def bank(self, clipset, name, seed):
            self.asked.append((name, seed))
            return super().bank(clipset, name, seed)

    kw = dict(loader=tiny_loader, noise=Recording(), clipset=make_clipset(), show_progress=False)
    summary = run_plan(plan, **kw)
    assert summary.ok and summary.computed == 1 + 2 * 3
    assert sorted(Recording.asked) == [("white", 0), ("white", 1), ("white", 2)]  # one bank per seed
    with Store(plan.store) as st:
        cells = st.cells()
        assert len({c.cell_key for c in cells}) == 7
        noisy = [c for c in cells if c.noise == "white"]
        assert sorted((c.snr_db, c.seed) for c in noisy) == [(s, k) for s in (-5.0, 10.0) for k in (0, 1, 2)]
        assert {c.noise_version for c in noisy} == {"1"}
    again = run_plan(plan, **kw)
    assert (again.computed, again.reused) == (0, 7)
    one, _ = _plan("--models", "test-tiny", "--noise", "white", "--snr", "-5", "--seed", "2",
                   "--store", str(tmp_path / "s.sqlite"))
    assert run_plan(one, **kw).reused == 2  # seed 2 alone: its cells are the same keys as in the seeds run


def test_the_run_says_how_many_cells_and_roughly_how_long_then_shows_progress_inside_a_slow_cell(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress_mod, "WITHIN_AFTER_S", 0.0)
    monkeypatch.setattr(progress_mod, "PLAIN_EVERY_S", 0.0)
    plan = Plan(models=["test-tiny-slow"], noise=["white"], snr=[0.0], batch_size=256,
                store=str(tmp_path / "s.sqlite")).validate()

    def loader(card, checkpoint, device):
        return tiny_loader(card, checkpoint, device)

    class Versioned(RmsNoise):
        def version(self, name):
            return "1"

    loader.sha256 = lambda card, checkpoint: tiny_loader(card, checkpoint, "cpu").sha256
    run_plan(plan, loader=loader, noise=Versioned(), clipset=make_clipset(), show_progress=True)
    err = capsys.readouterr().err
    assert "1 models x 2 conditions" in err and "2 cells to compute; roughly" in err and "estimate:" in err
    # the slow model (0.04 s a batch) is cut into batches, each reported as clips done
    assert "... test-tiny-slow | clean @ 16000 Hz: 32/60 clips" in err
    run_plan(plan, loader=loader, noise=Versioned(), clipset=make_clipset(), show_progress=True)
    assert "0 cells to compute, 2 already stored" in capsys.readouterr().err
    plan.force = True  # the same work again: now timed from the store's earlier cells of this model
    run_plan(plan, loader=loader, noise=Versioned(), clipset=make_clipset(), show_progress=True)
    assert "2 cells to compute; roughly" in (err := capsys.readouterr().err)
    assert "1 models from their speed in earlier runs on this device" in err


_CHILD = """
import sys
sys.path.insert(0, {here!r})
from helpers import TINY_CARDS, make_plan, tiny_loader, RmsNoise, make_clipset
from pathlib import Path
from kwsbench.commands.run import interrupt_on_sigterm
from kwsbench.models.registry import registered
from kwsbench.run.runner import run_plan
with registered(*TINY_CARDS), interrupt_on_sigterm():
    run_plan(make_plan(Path({tmp!r}), models=["test-tiny-slow"], snr=list(range(-30, 30, 2)), batch_size=6,
                       store={store!r}), loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(),
             show_progress=False)
"""


@pytest.mark.slow
def test_sigterm_records_the_run_as_interrupted(tmp_path):
    store = str(tmp_path / "t.sqlite")
    code = _CHILD.format(here=str(HERE), tmp=str(tmp_path), store=store)
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a stored cell, then stop the run the way a job manager does
        time.sleep(0.2)
        try:
            with sqlite3.connect(store) as con:
                if con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] >= 1:
                    break
        except sqlite3.Error:
            pass
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err.decode()
    with sqlite3.connect(store) as con:
        status = con.execute("SELECT status, finished FROM runs").fetchall()
        cells = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    assert cells < 31, "the signal must land mid-run"
    assert status[0][0] == "interrupted" and status[0][1]


def test_sigterm_in_a_forked_worker_ends_it_as_without_the_handler():
    """Noise banks render in forked workers, which the pool ends with SIGTERM: they must not raise."""
    from kwsbench.commands.run import interrupt_on_sigterm

    with interrupt_on_sigterm():
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                os._exit(3)  # reached only if the handler raised instead of ending the process
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def _tiny_speech_commands(root: Path) -> Path:
    """Two noise clips per folder of the canonical layout: enough for a model to run on, not to learn from."""
    import numpy as np
    import soundfile as sf

    from kwsbench.data.speech_commands import CANONICAL_FOLDERS

    for c, folder in enumerate(CANONICAL_FOLDERS):
        for i in range(2):
            name = f"{i}.wav" if folder == "_silence_" else f"{c:04x}{i:04x}_nohash_0.wav"
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.random.default_rng(10 * c + i).uniform(-0.3, 0.3, 16000), 16000, subtype="PCM_16")
    return root


def test_a_model_without_public_weights_names_the_flag_that_runs_it(tmp_path, capsys):
    """bc-resnet-1 has no public weights: its failed cells name the project's weights for it, and the run with the
    named flag, or with a file given in a plan, works."""
    data = _tiny_speech_commands(tmp_path / "gsc")
    args = ["run", "--models", "bc-resnet-1", "--data-dir", str(data), "--store", str(tmp_path / "s.sqlite")]
    assert main(args) == 1
    said = capsys.readouterr()
    assert "Traceback" not in said.err and "`--weights gsc-mini`" in said.out + said.err, said
    assert main([*args, "--weights", "gsc-mini"]) == 0
    from kwsbench.checkpoints import get_manifest  # the other advice: a file given in a plan YAML

    mini = get_manifest("gsc-mini")
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"checkpoints: {{bc-resnet-1: {mini.file_path(mini.entry('bc-resnet-1.pt'))}}}\n")
    assert main([*args, "--config", str(plan), "--force"]) == 0


def test_the_help_examples_name_models_that_have_default_weights(capsys):
    """`kwsbench --help`'s real-data example runs as written: every model it names has a default checkpoint."""
    import re

    from kwsbench.models.registry import get_card

    with pytest.raises(SystemExit):
        main(["--help"])
    examples = capsys.readouterr().out.split("examples:")[1].split("environment variables:")[0]
    named = [m for line in re.findall(r"--models (\S+)", examples) for m in line.split(",")]
    assert named
    for model in named:
        assert get_card(model).checkpoint, f"--help example names {model}, which has no default checkpoint"


def test_babble_on_too_few_clips_says_what_to_do_and_the_advice_runs(tmp_path, capsys):
    """Continuous babble is built from the clip set's non-target words: two `_unknown_` clips are too few. The error
    (exit 5, no traceback) says how many there are and what to run instead; `--noise babble-tts` then works."""
    data = _tiny_speech_commands(tmp_path / "gsc")
    args = ["run", "--models", "bc-resnet-1", "--weights", "gsc-mini", "--data-dir", str(data), "--snr", "-5",
            "--store", str(tmp_path / "s.sqlite")]
    assert main([*args, "--noise", "babble"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and "this clip set has 2" in err and "speaker ''" not in err, err
    assert "--per-class" in err and "`--noise babble-tts`" in err, err
    assert main([*args, "--noise", "babble-tts"]) == 0


def test_a_data_folder_run_announces_only_the_models_whose_weights_are_here(tmp_path, monkeypatch, capsys):
    """--data-dir without --models: the models without weights here are left out before the run (one line per
    reason), so the cells announced, and the time estimated, are those of the models that run."""
    import torch
    from helpers import TinyKws

    from kwsbench.models.registry import ModelCard, registered

    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))  # nothing imported
    weights = tmp_path / "tiny.pt"
    torch.save(TinyKws(seed=5).state_dict(), weights)
    data = _tiny_speech_commands(tmp_path / "gsc")
    card = ModelCard(name="test-with-file", family="test", builder=TinyKws, checkpoint=str(weights))
    with registered(card):
        assert main(["run", "--data-dir", str(data), "--store", str(tmp_path / "s.sqlite")]) == 0
    said = capsys.readouterr()
    err = said.err
    assert "1 models x 1 conditions" in err and "1 cells to compute" in err, err
    # a clean-only run: the default SNRs of the plan are not part of any condition, so none are announced
    assert "(clean only, 1 rate(s))" in err and "0 noise x 7 SNR" not in err, err
    not_imported, = [line for line in err.splitlines() if "public nc-ssm weights not imported" in line]
    assert "`kwsbench checkpoints fetch --manifest kwt`" in err  # fetch's default manifest is nc-ssm
    no_weights, = [line for line in err.splitlines() if line.endswith(NO_PUBLIC_WEIGHTS)]
    assert "nc-ssm" in not_imported and "bc-resnet-1," in no_weights and "test-tiny" in no_weights
    assert "skipped" not in said.out  # nothing is left to skip at load time


def test_with_no_weights_here_a_bad_data_folder_noise_or_protocol_is_still_named(tmp_path, monkeypatch, capsys):
    """A fresh user has no weights: every model is left out, and a missing data folder, a typo'd noise or a protocol
    the folder cannot serve read 'nothing to run' (exit 1) instead of their own error and its exit code."""
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))  # nothing imported
    data = _tiny_speech_commands(tmp_path / "gsc")
    store = tmp_path / "s.sqlite"
    for extra, code, says in ((["--data-dir", str(tmp_path / "nowhere")], 4, "kwsbench data download gsc-v2-test"),
                              (["--data-dir", str(data), "--noise", "factroy"], 5, "unknown noise source 'factroy'"),
                              (["--data-dir", str(data), "--protocol", "v2-35"], 4, "kwsbench data download gsc-v2"),
                              (["--data-dir", str(data), "--protocol", "v2-99"], 5, "unknown protocol 'v2-99'")):
        assert main(["run", "--quick", *extra, "--store", str(store)]) == code, extra
        err = capsys.readouterr().err
        assert says in err and "nothing to run" not in err and "left out" not in err, err
    assert not store.exists()


def test_a_data_folder_run_with_no_weights_at_all_stops_before_announcing_anything(tmp_path, monkeypatch, capsys):
    """Nothing imported and no --weights: every model is left out, so there is nothing to run. The run used to fall
    back to every model and announce 40 models, 80 cells and "roughly 26 min" before skipping them all."""
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))  # nothing imported
    data = _tiny_speech_commands(tmp_path / "gsc")
    store = tmp_path / "s.sqlite"
    assert main(["run", "--quick", "--data-dir", str(data), "--store", str(store)]) == 1
    said = capsys.readouterr()
    assert "public nc-ssm weights not imported" in said.err  # the left-out lines still say what to get
    assert "nothing to run: every model was left out" in said.err and "--weights synth" in said.err
    assert "cells to compute" not in said.err and "Traceback" not in said.err, said.err
    assert not store.exists()  # stopped before the run: no store created


def test_a_public_model_not_imported_also_names_the_project_weights_that_run_now(tmp_path, monkeypatch, capsys):
    """ds-cnn-s named on a fresh machine: its public weights are not imported, and the project ships synth weights
    for it; the failed cells say both, and the run with the named flag works."""
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))  # nothing imported
    data = _tiny_speech_commands(tmp_path / "gsc")
    args = ["run", "--models", "ds-cnn-s", "--data-dir", str(data), "--store", str(tmp_path / "s.sqlite")]
    assert main(args) == 1
    said = capsys.readouterr()
    assert "kwsbench checkpoints import DIR" in said.err and "run with `--weights synth`" in said.err, said.err
    assert main([*args, "--weights", "synth"]) == 0


@pytest.mark.data
def test_the_left_out_line_names_the_shared_copy_of_public_weights_and_that_import_works(tmp_path, monkeypatch):
    """Where the team's shared folder holds a manifest's files, the left-out line names the import command for that
    folder (which then works as written); elsewhere it says DIR."""
    import re

    from helpers import require_shared

    from kwsbench.checkpoints import resolve_checkpoint
    from kwsbench.models.registry import get_card
    from kwsbench.run.plan import not_imported

    shared = require_shared("checkpoints", "nc-ssm").parent.parent
    monkeypatch.setenv("KWSBENCH_SHARED", str(tmp_path / "nowhere"))
    assert "`kwsbench checkpoints import DIR`" in not_imported("nc-ssm")
    monkeypatch.setenv("KWSBENCH_SHARED", str(shared))
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    line = not_imported("nc-ssm")
    command, = [c for c in re.findall(r"`([^`]+)`", line) if c.startswith("kwsbench checkpoints import")]
    assert command == f"kwsbench checkpoints import {shared / 'checkpoints' / 'nc-ssm'}"
    assert main(command.split()[1:]) == 0
    resolve_checkpoint(get_card("nc-ssm").checkpoint)  # now present
