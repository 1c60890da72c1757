"""--precision fp32 / tf32 / bf16: recorded in every cell's key (fp32 keys and stores from before unchanged), the
TF32 switches and bf16 autocast while a run evaluates, the caller's settings given back, CPU refusals."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import RmsNoise, TinyKws, make_clipset, make_plan, stored_cell, tiny_loader

from kwsbench.cli import main
from kwsbench.errors import EXIT_BAD_INPUT, EXIT_USAGE, BadInputError, StoreError
from kwsbench.results.leaderboard import tidy_rows, wide_rows
from kwsbench.results.store import SCHEMA_VERSION, CellKey, CellResult, Store
from kwsbench.run.plan import PRECISIONS, Plan, load_plan
from kwsbench.run.precision import Autocast, check_gpu_supports, for_precision, precision_mode
from kwsbench.run.runner import run_plan

HERE = Path(__file__).resolve().parent
# A store written by kwsbench at commit 92b3411, before cells had a precision (schema 3): `make_plan(dir)` with
# the stand-in card `test-tiny`, `RmsNoise` and `make_clipset()`. Its three cells' keys and the digest of all its
# results (benchmarks/results_digest.py) as that code printed them:
OLD_STORE = HERE / "fixtures" / "store_v3_before_precision.sqlite"
OLD_KEYS = {
    ("clean", None): "0716749226a1a2ddd7a239a714c95350328426dfcbc4e0a561f50725995b4fee",
    ("white", -5.0): "ef597f04d4ccf02b1f662fbe99ff0d82eecf9f25313fb2d93abc37a3b88097ea",
    ("white", 5.0): "e88892e672fddeb1e7682837fff832c71b516b351577ae13b77f62c007c0822e",
}
OLD_RESULTS_DIGEST = "8840c9c1f6d75bb1028e6b81623d5c9d91b41a0e8f633bff6195e0626da6adc7"

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
pytestmark = pytest.mark.usefixtures("tiny_cards")  # the runner's stand-in cards, registered for each test only


def _key(**kw) -> CellKey:
    base = dict(model="m", checkpoint_sha256="a" * 64, fingerprint="f" * 64, noise="white", noise_version="v1",
                snr_db=0.0, snr_def="rms", rate_hz=16000, rate_mode="native", decimation="", seed=0)
    return CellKey(**{**base, **kw})


def _cell(key: CellKey, preds: list[int]) -> CellResult:
    return CellResult(key=key, protocol="p", label_names=("a", "b"), status="ok", accuracy=0.5, n=len(preds),
                      correct=1, ci_low=0.1, ci_high=0.9, predictions=np.array(preds))


def _digest_module():
    spec = importlib.util.spec_from_file_location("results_digest", HERE.parent / "benchmarks" / "results_digest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results_digest(path: Path) -> str:
    return _digest_module().digest(path)[0]


# -- keys --------------------------------------------------------------------------------------------------------

def test_each_precision_has_its_own_key_and_fp32_is_the_default():
    digests = {p: _key(precision=p).digest() for p in PRECISIONS}
    assert len(set(digests.values())) == len(PRECISIONS)
    assert _key().precision == "fp32" and _key().digest() == digests["fp32"]


def test_fp32_keys_and_stores_from_before_the_precision_are_unchanged(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(OLD_STORE, path)
    with Store(path) as st:  # a writer migrates schema 3 -> 4 in place
        cells = st.cells()
        assert {(c.noise, c.snr_db): c.cell_key for c in cells} == OLD_KEYS
        assert all(c.precision == "fp32" and c.key.digest() == c.cell_key for c in cells)
        assert all(st.has_ok(c.key) for c in cells) and not st.damaged  # checksums of schema 3 still hold
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert _results_digest(path) == OLD_RESULTS_DIGEST
    # the same plan today, fp32 by default: every cell is found and reused, none recomputed
    plan = make_plan(tmp_path, store=str(path))
    summary = run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
    assert (summary.computed, summary.reused) == (0, 3) and set(summary.cell_keys) == set(OLD_KEYS.values())


def test_an_old_store_is_read_as_fp32_without_being_changed(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(OLD_STORE, path)
    with Store(path, read_only=True) as st:  # leaderboard, compare, report
        assert {c.precision for c in st.cells()} == {"fp32"} and len(st.cells()) == 3
    assert _results_digest(path) == OLD_RESULTS_DIGEST  # the digest benchmark reads it as it is, too
    assert path.read_bytes() == OLD_STORE.read_bytes()


def test_cells_of_two_precisions_live_side_by_side_and_the_checksum_covers_the_precision(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        run = st.begin_run({})
        st.put_cell(run, _cell(_key(), [0, 0]))
        st.put_cell(run, _cell(_key(precision="bf16"), [1, 1]))
        assert st.has_ok(_key()) and st.has_ok(_key(precision="bf16")) and not st.has_ok(_key(precision="tf32"))
        by_precision = {c.precision: c for c in st.cells()}
        assert set(by_precision) == {"fp32", "bf16"}
        assert st.predictions(by_precision["bf16"].cell_key).tolist() == [1, 1]
        assert by_precision["bf16"].key == _key(precision="bf16")
    con = sqlite3.connect(path)  # a bf16 cell passed off as fp32 (and the reverse) fails its checksum
    con.execute("UPDATE cells SET precision = CASE precision WHEN 'bf16' THEN 'fp32' ELSE 'bf16' END")
    con.commit()
    con.close()
    with Store(path) as st, pytest.raises(StoreError, match="fail their checksum"):
        st.cells()


# -- plans and the command line ----------------------------------------------------------------------------------

def test_tf32_and_bf16_need_cuda_in_a_plan_and_on_the_command_line(tmp_path, capsys):
    for precision in ("tf32", "bf16"):
        with pytest.raises(BadInputError, match=f"precision {precision} needs a CUDA device"):
            Plan(precision=precision, device="cpu").validate()
        assert Plan(precision=precision, device="cuda:1").validate().precision == precision
        store = tmp_path / "s.sqlite"
        code = main(["run", "--models", "test-tiny", "--precision", precision, "--store", str(store)])
        err = capsys.readouterr().err
        assert code == EXIT_BAD_INPUT == 5 and "needs a CUDA device (--device cuda)" in err and "Traceback" not in err
        assert not store.exists()  # refused before the store is opened
    config = tmp_path / "plan.yaml"
    config.write_text("precision: bf16\n")
    assert main(["run", "--config", str(config), "--store", str(tmp_path / "s.sqlite")]) == EXIT_BAD_INPUT
    config.write_text("precision: fp16\ndevice: cuda\n")
    with pytest.raises(BadInputError, match="precision must be one of fp32, tf32, bf16"):
        load_plan(config)
    with pytest.raises(SystemExit) as stop:  # argparse's choices: a usage error
        main(["run", "--precision", "fp16"])
    assert stop.value.code == EXIT_USAGE
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


@pytest.mark.parametrize("capability, refused", [((7, 0), True), ((7, 5), True), ((8, 0), False), ((9, 0), False)])
def test_tf32_and_bf16_are_refused_on_a_gpu_older_than_ampere(monkeypatch, capability, refused):
    # a V100 (7.0) or T4 (7.5) has no TF32: a cell keyed tf32 would hold fp32 products
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "an old GPU")
    check_gpu_supports("fp32", "cuda:0")  # fp32 runs anywhere
    for precision in ("tf32", "bf16"):
        if refused:
            with pytest.raises(BadInputError, match=f"precision {precision} needs .* 8.0 .*an old GPU.* is 7"):
                check_gpu_supports(precision, "cuda:0")
        else:
            check_gpu_supports(precision, "cuda:0")


def test_the_plan_and_the_run_record_the_precision(tmp_path):
    summary = run_plan(make_plan(tmp_path), loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(),
                       show_progress=False)
    with Store(tmp_path / "s.sqlite") as st:
        assert {c.precision for c in st.cells()} == {"fp32"} and summary.computed == 3
        assert '"precision": "fp32"' in st.runs()[-1]["plan"]


# -- the arithmetic --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision, inside", [("fp32", False), ("tf32", True), ("bf16", False)])
def test_each_precision_sets_the_tf32_switches_and_gives_the_callers_back(precision, inside):
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        for caller in (True, False):
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = caller
            with pytest.raises(RuntimeError, match="inside"), precision_mode(precision):
                assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (inside, inside)
                raise RuntimeError("inside")  # an error in the block gives the settings back as well
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (caller, caller)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_bf16_runs_the_models_layers_in_bf16_and_returns_fp32_logits():
    # on the CPU's autocast, to test the wrapper itself (a CPU run refuses bf16: see the plan test)
    model = TinyKws(seed=3).eval()
    seen: list[torch.dtype] = []
    model.proj.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    assert for_precision(model, "fp32", "cpu") is model and for_precision(model, "tf32", "cuda") is model
    wrapped = for_precision(model, "bf16", "cpu")
    assert isinstance(wrapped, Autocast)
    x = 0.1 * torch.randn(8, 16000, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference, low = model(x), wrapped(x)
    assert seen == [torch.float32, torch.bfloat16] and low.dtype == torch.float32
    assert not torch.equal(low, reference)  # computed in bf16, not the fp32 logits passed through
    # bf16 keeps 8 bits of mantissa (~0.4 %): the logits stay within 1 % of their scale
    assert float((low - reference).abs().max()) < 0.01 * float(reference.abs().max())


def test_every_registered_model_runs_under_bf16_autocast():
    # CPU autocast stands in for CUDA's here (same rule: ops given out= buffers or fp32 operands are not cast);
    # S-Edge's fused layer kernel failed under it ("self and mat2 must have the same dtype") until it kept fp32
    from kwsbench.models.registry import all_cards

    x = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    failed = []
    for card in all_cards():
        if card.family == "test":  # this file's stand-in cards (one of them fails on purpose)
            continue
        model = card.build().eval()
        clip = x[:, :card.native_rate]
        try:
            with torch.inference_mode():
                reference, low = model(clip), Autocast(model, "cpu")(clip)
        except RuntimeError as err:
            failed.append(f"{card.name}: {err}")
            continue
        assert low.dtype == torch.float32 and low.shape == reference.shape and bool(torch.isfinite(low).all())
        # untrained weights; the nanomamba sizes move most (~12 % of the logits' scale), the others < 2 %
        assert float((low - reference).abs().max()) < 0.25 * float(reference.abs().max()), card.name
    assert not failed, failed


# -- results ------------------------------------------------------------------------------------------------------

def test_leaderboard_rows_and_wide_tables_keep_precisions_apart():
    cells = [stored_cell(cell_key=f"{p}{m}", model=m, precision=p, correct=c, accuracy=c / 10)
             for p, m, c in (("fp32", "a", 5), ("fp32", "b", 6), ("bf16", "a", 4), ("bf16", "b", 6))]
    rows = tidy_rows(cells, with_cost=False)
    assert [(r.precision, r.model, r.correct) for r in rows] == [  # fp32 first, never merged with bf16; best first
        ("fp32", "b", 6), ("fp32", "a", 5), ("bf16", "b", 6), ("bf16", "a", 4)]
    wide = wide_rows(rows)
    assert sorted((r["precision"], r["model"], r["clean_pct"]) for r in wide) == [
        ("bf16", "a", 40.0), ("bf16", "b", 60.0), ("fp32", "a", 50.0), ("fp32", "b", 60.0)]


def test_the_report_draws_fp32_where_the_store_has_it():
    from kwsbench.report.html import select_view

    cells = [stored_cell(cell_key=f"{p}{m}", model=m, precision=p, created=f"2026-01-0{i}T00:00:00")
             for i, (p, m) in enumerate((("fp32", "a"), ("bf16", "a"), ("bf16", "b")), 1)]
    view = select_view(cells)
    assert view.precision == "fp32" and [c.cell_key for c in view.cells] == ["fp32a"] and view.excluded == 2
    assert select_view(cells[1:]).precision == "bf16"


# -- on a GPU (skipped without CUDA) ----------------------------------------------------------------------------

class _Conv(torch.nn.Module):
    """A small convolution + linear model: both are on autocast's bf16 list and use TF32 when allowed."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv1d(1, 8, 64, stride=32)
        self.head = torch.nn.Linear(8, 12)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        self.seen: list[tuple] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.unsqueeze(1)).relu().mean(-1)
        self.seen.append((h.dtype, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return self.head(h)


@cuda
def test_a_gpu_run_at_each_precision_stores_cells_of_its_own(tmp_path):
    from kwsbench.checkpoints import LoadedModel

    models: dict[str, _Conv] = {}

    def loader(card, checkpoint, device):
        models[card.name] = _Conv().to(device).eval()
        return LoadedModel(models[card.name], "c" * 64)

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # a caller that chose TF32
    keys, dtypes = {}, {}
    try:
        for precision in PRECISIONS:
            plan = make_plan(tmp_path, device="cuda", precision=precision, batch_size=16)
            summary = run_plan(plan, loader=loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
            assert summary.ok and summary.computed == 3
            keys[precision] = set(summary.cell_keys)
            dtypes[precision] = set(models["test-tiny"].seen)
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    assert dtypes == {"fp32": {(torch.float32, False, False)}, "tf32": {(torch.float32, True, True)},
                      "bf16": {(torch.bfloat16, False, False)}}
    assert len(keys["fp32"] | keys["tf32"] | keys["bf16"]) == 9
    with Store(tmp_path / "s.sqlite") as st:
        assert sorted(c.precision for c in st.cells()) == ["bf16"] * 3 + ["fp32"] * 3 + ["tf32"] * 3


@cuda
def test_a_captured_graph_of_a_bf16_forward_replays_the_eager_bf16_logits():
    from kwsbench.run.graphs import GraphedForward

    model = _Conv().cuda().eval()
    forward = GraphedForward(for_precision(model, "bf16", "cuda"))
    x = (0.1 * torch.randn(32, 16000, generator=torch.Generator().manual_seed(1))).cuda()
    with torch.inference_mode():
        eager = Autocast(model, "cuda")(x)
        replayed = forward(x)
    assert forward.fallback_reason == "" and forward.graphs  # captured, not run eagerly
    assert replayed.dtype == torch.float32 and torch.equal(replayed, eager)


def test_the_digest_benchmark_pairs_cells_that_differ_in_precision_alone(tmp_path):
    """How an fp32 store and a `--precision tf32` store of the same grid are compared: cell by cell."""
    a, b = tmp_path / "fp32.sqlite", tmp_path / "tf32.sqlite"
    with Store(a) as st:
        run = st.begin_run({})
        st.put_cell(run, _cell(_key(), [0, 1, 1, 0]))
        st.put_cell(run, _cell(_key(snr_db=5.0), [1, 1, 1, 1]))
    with Store(b) as st:
        run = st.begin_run({})
        flipped = _cell(_key(precision="tf32"), [0, 1, 0, 0])
        flipped.accuracy = 0.25
        st.put_cell(run, flipped)
        st.put_cell(run, _cell(_key(snr_db=5.0, precision="tf32"), [1, 1, 1, 1]))
        st.put_cell(run, _cell(_key(snr_db=10.0, precision="tf32"), [1, 1, 1, 1]))  # no fp32 partner
    module = _digest_module()
    assert module.diff(a, b) == {}  # by full key nothing pairs: the precision is part of it
    row = module.diff(a, b, across_precision=True)["m"]
    assert (row["cells"], row["cells_differ"], row["flips"]) == (2, 1, 1)
    assert row["max_dpp"] == 25.0
