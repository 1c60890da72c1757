"""Leaderboard rows from a store: clip sets never mix, seeds aggregate as by hand, rank groups equal the pairwise
tests, exports are plain and valid.

The store holds two clip sets (named by their plans' data folders) measured by the real grid runner with
hand-weighted band-energy models of graded quality, clip set A under three noise seeds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math

import numpy as np
import pytest
import torch
from helpers import RmsNoise, TinyKws, make_clipset, make_plan, stored_cell, tiny_loader
from scipy.stats import binomtest

from kwsbench.cli import main
from kwsbench.errors import EXIT_NO_STORE
from kwsbench.models.registry import ModelCard, registered
from kwsbench.results.leaderboard import TIDY_COLUMNS, store_rows, tidy_rows, wide_rows
from kwsbench.results.ranks import letter_groups, share_group
from kwsbench.results.store import Store
from kwsbench.run.runner import run_plan

# the tone of class k lies near 200 + 550 k Hz, i.e. in 500-Hz band (200 + 550 k) // 500 of TinyKws
_BAND = [(200 + 550 * k) // 500 for k in range(12)]


def _graded(blur: float, seed: int) -> TinyKws:
    """Weights = the right band per class, plus `blur` times random weights: larger blur, worse model."""
    model = TinyKws(seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.zeros(12, 16)
        w[torch.arange(12), torch.tensor(_BAND)] = 1.0
        model.proj.weight.copy_(w + blur * torch.randn(12, 16, generator=g))
    return model


BOARD_MODELS = {"test-board-good": (0.05, 1), "test-board-fair": (0.4, 2), "test-board-fair2": (0.42, 3),
                "test-board-poor": (1.5, 4)}
BOARD_CARDS = tuple(ModelCard(name=name, family="test", builder=_graded, kwargs={"blur": blur, "seed": seed})
                    for name, (blur, seed) in BOARD_MODELS.items())

SEEDS_A = (0, 1, 2)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """The measured store; the board's cards are registered while it is built (the tests read stored cells)."""
    tmp = tmp_path_factory.mktemp("board")
    models = sorted(BOARD_MODELS)
    with registered(*BOARD_CARDS):
        plan = make_plan(tmp, models=models, noise=["white", "hum"], snr=[-5.0, 5.0], data_dir="/data/set-a",
                         seeds=list(SEEDS_A))
        run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=10), show_progress=False)
        plan = make_plan(tmp, models=models, noise=["white"], snr=[0.0], data_dir="/data/set-b")
        run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=6, seed=1),
                 show_progress=False)
    return plan.store


def _csv(capsys, *args) -> list[dict]:
    capsys.readouterr()
    assert main(["leaderboard", "--format", "csv", *args]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_per_seed_csv_columns_units_and_plain_numbers(store_path, capsys):
    rows = _csv(capsys, "--store", store_path, "--per-seed")
    with Store(store_path) as st:
        cells = {(c.fingerprint[:12], c.model, c.noise, c.snr_db, c.seed): c for c in st.cells()}
    # clean audio has no noise: one clean cell per model, the noisy ones once per seed
    assert tuple(rows[0]) == TIDY_COLUMNS and len(rows) == len(cells) == 4 * (1 + 4 * 3) + 4 * 2
    for r in rows:
        c = cells[(r["fingerprint"], r["model"], r["noise"], float(r["snr_db"]) if r["snr_db"] else None,
                   int(r["seed"]))]
        assert "," not in r["accuracy_pct"] and "e" not in r["accuracy_pct"]
        assert int(r["n"]) == c.n and int(r["correct"]) == c.correct
        # one unit everywhere: percent, and the percent is correct / n
        assert abs(float(r["accuracy_pct"]) - 100 * c.correct / c.n) < 1e-6
        assert abs(float(r["wilson_low_pct"]) - 100 * c.ci_low) < 1e-6
        assert float(r["wilson_low_pct"]) <= float(r["accuracy_pct"]) <= float(r["wilson_high_pct"])
        assert float(r["boot_low_pct"]) <= float(r["boot_high_pct"]) and 0 <= float(r["macro_f1"]) <= 1
        assert r["seed_sd_pct"] == "" and r["n_seeds"] == "1"


def test_exports_never_mix_clip_sets(store_path, capsys):
    rows = _csv(capsys, "--store", store_path)
    named = {(r["data"], r["fingerprint"]) for r in rows}
    assert {d for d, _ in named} == {"set-a", "set-b"} and len(named) == 2  # one name per clip set
    with Store(store_path) as st:
        n_b = {c.fingerprint[:12]: c.n for c in st.cells()}
    for r in rows:
        assert int(r["n"]) == n_b[r["fingerprint"]]
    only_b = _csv(capsys, "--store", store_path, "--data", "set-b", "--per-seed")
    assert {r["data"] for r in only_b} == {"set-b"} and len(only_b) == 4 * 2
    fp_a = next(r["fingerprint"] for r in rows if r["data"] == "set-a")
    assert {r["data"] for r in _csv(capsys, "--store", store_path, "--data", fp_a)} == {"set-a"}
    assert {r["weights"] for r in rows} == {"unlisted"}
    assert _csv(capsys, "--store", store_path, "--weights", "unlisted", "--protocol", "test-12")
    assert main(["leaderboard", "--store", store_path, "--data", "nope"]) == 5
    assert "set-a" in capsys.readouterr().err  # the error lists what is stored
    assert main(["leaderboard", "--store", store_path, "--run", "999"]) == 5
    # the wide view keeps the clip sets apart too: one row per model and clip set
    capsys.readouterr()
    assert main(["leaderboard", "--store", store_path, "--wide", "--format", "json"]) == 0
    wide = json.loads(capsys.readouterr().out)
    assert sorted((w["data"], w["model"]) for w in wide) == sorted(itertools.product(("set-a", "set-b"),
                                                                                     BOARD_MODELS))


def test_seed_aggregation_equals_hand_computation(store_path, capsys):
    rows = _csv(capsys, "--store", store_path, "--data", "set-a")
    clean = [r for r in rows if r["noise"] == "clean"]
    assert len(clean) == 4 and all(r["seed"] == "0" and r["seed_sd_pct"] == "" for r in clean)
    rows = [r for r in rows if r["noise"] != "clean"]
    assert len(rows) == 4 * 4 and {r["seed"] for r in rows} == {"0,1,2"}
    t_975_2 = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom (from a table)
    with Store(store_path) as st:
        for r in rows:
            snr = float(r["snr_db"]) if r["snr_db"] else None
            cs = [c for c in st.cells(model=r["model"], noise=r["noise"], snr_db=snr) if c.fingerprint[:12]
                  == r["fingerprint"]]
            assert sorted(c.seed for c in cs) == list(SEEDS_A)
            accs = [100.0 * c.correct / c.n for c in cs]
            mean = sum(accs) / 3
            sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
            assert abs(float(r["accuracy_pct"]) - mean) < 1e-5
            assert int(r["correct"]) == sum(c.correct for c in cs) and int(r["n"]) == cs[0].n
            assert abs(float(r["seed_sd_pct"]) - sd) < 1e-5
            half = t_975_2 * sd / math.sqrt(3)
            assert abs(float(r["seed_ci_low_pct"]) - max(0.0, mean - half)) < 1e-5
            assert abs(float(r["seed_ci_high_pct"]) - min(100.0, mean + half)) < 1e-5
            assert abs(float(r["macro_f1"]) - sum(c.macro_f1 for c in cs) / 3) < 1e-6


def _bh_by_hand(p: list[float], alpha: float = 0.05) -> list[bool]:
    """Benjamini-Hochberg step-up: reject the k smallest p, k the largest i with p_(i) <= i alpha / m."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    k = max((i + 1 for i in range(m) if p[order[i]] <= (i + 1) * alpha / m), default=0)
    return [i in set(order[:k]) for i in range(m)]


def test_rank_groups_equal_pairwise_tests(store_path, capsys):
    rows = _csv(capsys, "--store", store_path, "--per-seed")
    conditions: dict[tuple, list[dict]] = {}
    for r in rows:
        conditions.setdefault((r["fingerprint"], r["noise"], r["snr_db"], r["seed"]), []).append(r)
    seen_tie = seen_split = False
    with Store(store_path) as st:
        cells = {(c.fingerprint[:12], c.model, c.noise, "" if c.snr_db is None else f"{c.snr_db:g}", str(c.seed)): c
                 for c in st.cells()}
        for (fp, noise, snr, seed), members in conditions.items():
            correct = {}
            for r in members:
                c = cells[(fp, r["model"], noise, snr, seed)]
                correct[r["model"]] = st.predictions(c.cell_key) == st.clips(c.fingerprint)[2]
            pairs = list(itertools.combinations(sorted(correct), 2))
            p = []
            for a, b in pairs:  # exact McNemar by hand: two-sided binomial test on the discordant clips
                only_a = int(np.sum(correct[a] & ~correct[b]))
                only_b = int(np.sum(~correct[a] & correct[b]))
                p.append(1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b).pvalue)
            diff = dict(zip(pairs, _bh_by_hand(p), strict=True))
            group = {r["model"]: r["rank_group"] for r in members}
            rank = {r["model"]: int(r["rank"]) for r in members}
            for (a, b), d in diff.items():
                assert share_group(group[a], group[b]) == (not d), (fp, noise, snr, seed, a, b)
                seen_tie |= not d
                seen_split |= d
            for m in correct:
                better = sum(1 for o in correct if o != m and correct[o].mean() > correct[m].mean()
                             and diff[tuple(sorted((o, m)))])
                assert rank[m] == 1 + better
    assert seen_tie and seen_split  # the store holds both kinds of pair, so both directions were checked


def test_models_ranks_among_the_listed_models_and_the_help_says_so(store_path, capsys):
    """`--models` picks the models that are ranked, not only the rows shown: the fair model is behind the good one
    on the whole board but first among the fair and poor ones. A reader comparing the two tables is told."""
    def fair_ranks(*args):
        return {(r["fingerprint"], r["noise"], r["snr_db"]): int(r["rank"])
                for r in _csv(capsys, "--store", store_path, *args) if r["model"] == "test-board-fair"}

    whole, listed = fair_ranks(), fair_ranks("--models", "test-board-fair,test-board-poor")
    assert set(listed.values()) == {1} and max(whole.values()) > 1
    with pytest.raises(SystemExit):
        main(["leaderboard", "--help"])
    assert "ranks and rank groups are among the listed models" in " ".join(capsys.readouterr().out.split())


def test_letter_groups_handle_non_transitive_ties():
    # a ~ b, b ~ c, but a differs from c: b belongs to both groups
    groups = letter_groups(["a", "b", "c"], lambda x, y: {x, y} == {"a", "c"})
    assert groups == {"a": "a", "b": "ab", "c": "b"}
    many = [f"m{i}" for i in range(30)]  # all different: 30 groups, letters past z stay distinct
    g = letter_groups(many, lambda x, y: True)
    assert len(set(g.values())) == 30 and not any(share_group(g[x], g[y]) for x, y in itertools.combinations(many, 2))


def test_wide_means_average_the_same_conditions(store_path):
    with Store(store_path) as st:
        rows = store_rows(st, per_seed=False, with_cost=False)
        wide = wide_rows(rows)
        # take one cell away from one model: its noisy mean must become empty, not an average of fewer cells
        dropped = [r for r in rows if not (r.model == "test-board-poor" and r.noise == "hum" and r.snr_db == 5.0)]
        wide_dropped = wide_rows(dropped)
    a = [w for w in wide if w["data"] == "set-a"]
    for w in a:
        mine = [r for r in rows if r.model == w["model"] and r.data == "set-a"]
        white = [r.accuracy_pct for r in mine if r.noise == "white"]
        noisy = [r.accuracy_pct for r in mine if r.noise != "clean"]
        assert abs(w["white_pct_mean_over_snr_-5_5"] - sum(white) / 2) < 1e-9
        assert abs(w["noisy_pct_mean"] - sum(noisy) / 4) < 1e-9
        assert w["noisy_mean_over"].startswith("4 conditions: hum, white at SNR -5, 5 dB, seeds 0,1,2")
    assert sorted(w["position"] for w in a) == [1, 2, 3, 4]
    for w in (w for w in wide if w["data"] == "set-b"):  # one condition, one seed: no "1 conditions", "seeds 0"
        assert w["noisy_mean_over"] == "1 condition: white at SNR 0 dB, seed 0", w["noisy_mean_over"]
    poor = next(w for w in wide_dropped if w["data"] == "set-a" and w["model"] == "test-board-poor")
    assert poor["noisy_pct_mean"] is None and poor["hum_pct_mean_over_snr_-5_5"] is None and poor["position"] is None
    assert poor["white_pct_mean_over_snr_-5_5"] is not None


def test_md_and_json_are_valid_even_with_non_finite_values(store_path, tmp_path):
    with Store(store_path) as st:
        cells = st.cells()
    bad = dataclasses.replace(cells[0], snr_db=float("nan"), macro_f1=float("inf"), ci_low=float("-inf"))
    for per_seed in (True, False):
        rows = [dataclasses.asdict(r) for r in tidy_rows([bad, *cells[1:]], per_seed=per_seed, with_cost=False)]
        from kwsbench.results.leaderboard import render

        data = json.loads(render(rows, "json"))  # strict: NaN / inf would make this raise
        assert len(data) == len(rows)
        assert render(rows, "md").startswith("| data |")
    out = tmp_path / "board.md"
    assert main(["leaderboard", "--store", store_path, "--wide", "--out", str(out)]) == 0
    assert out.read_text().startswith("| data |")


def test_missing_store_is_its_own_exit_code_and_names_the_path(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    for command in (["leaderboard"], ["compare", "nc-ssm", "bc-resnet-1"], ["report", "--out", str(tmp_path / "r")]):
        assert main([*command, "--store", str(missing)]) == EXIT_NO_STORE
        assert str(missing) in capsys.readouterr().err
        assert not missing.exists()  # reading never creates an empty store


def test_cost_columns_come_from_model_cost():
    from kwsbench.cost import Cost

    def cost(card, rate):
        return Cost(model=card.name, rate=rate, trainable_params=1234, inference_params=1200, folded="",
                    frontend_macs=rate * 10, body_macs=1000)

    costed = ModelCard(name="test-costed", family="test", builder=lambda: None, cost=cost)
    uncosted = ModelCard(name="test-uncosted", family="test", builder=lambda: None)
    cell = stored_cell(model="test-costed", protocol="p", rate_hz=8000, n=10, accuracy=0.5, ci_low=0.2, ci_high=0.8)
    with registered(costed, uncosted):
        [row] = tidy_rows([cell])
        assert (row.params, row.macs) == (1234, 8000 * 10 + 1000)
        assert row.accuracy_pct == 50.0 and row.data == "unknown data"
        [row] = tidy_rows([dataclasses.replace(cell, model="test-uncosted")])  # no cost function: empty columns
        assert (row.params, row.macs) == (None, None)
    [row] = tidy_rows([cell])  # no card any more (a model stored by another version): empty columns
    assert (row.params, row.macs) == (None, None)


def test_models_sharing_a_rank_are_listed_best_first_not_by_name():
    """Ties share a rank; within it the rows were in name order, so 70 % could be listed above 80 %."""
    scores = {"test-a-low": 14, "test-b-high": 16, "test-c-mid": 15}  # of 20 clips: no pair is told apart
    cells, correct = [], {}
    for i, (model, right) in enumerate(scores.items()):
        key = f"{i}" * 64
        cells.append(stored_cell(cell_key=key, model=model, n=20, correct=right, accuracy=right / 20))
        correct[key] = np.arange(20) < right
    rows = tidy_rows(cells, correct=correct)
    assert {r.rank for r in rows} == {1}
    assert [r.model for r in rows] == ["test-b-high", "test-c-mid", "test-a-low"]


def test_a_failing_cost_function_is_an_error_not_empty_columns():
    def cost(card, rate):
        raise RuntimeError("cost function exploded")

    cell = stored_cell(model="test-cost-fails", protocol="p", n=10, accuracy=0.5, ci_low=0.2, ci_high=0.8)
    with registered(ModelCard(name="test-cost-fails", family="test", builder=lambda: None, cost=cost)):
        with pytest.raises(RuntimeError, match="cost function exploded"):
            tidy_rows([cell])


def test_sign_flip_test_is_mcnemar_for_one_seed_and_exact_for_several():
    from kwsbench.results.ranks import sign_flip_test
    from kwsbench.results.stats import mcnemar_exact

    rng = np.random.default_rng(5)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    assert sign_flip_test(a.astype(int), b.astype(int), k=1).p_value == mcnemar_exact(a, b).p_value
    # five identical seeds (clean audio): the same clips counted once, the same p as one seed
    assert abs(sign_flip_test(5 * a.astype(int), 5 * b.astype(int), k=5).p_value - mcnemar_exact(a, b).p_value) < 1e-9
    # several seeds: the p-value is the share of all 2^m sign flips whose |sum| reaches the observed one
    ca, cb = rng.integers(0, 4, 12), rng.integers(0, 4, 12)
    d = ca - cb
    sums = [abs(sum(s * x for s, x in zip(signs, d, strict=True))) for signs in itertools.product((1, -1),
                                                                                                  repeat=len(d))]
    brute = sum(1 for v in sums if v >= abs(d.sum())) / len(sums)
    assert abs(sign_flip_test(ca, cb, k=3).p_value - brute) < 1e-9


def test_a_bridges_silence_items_are_left_out_unless_their_protocol_is_asked_for(tmp_path, capsys):
    """reproduce stores the silence items of a bridge as cells of '<protocol>:silence-<split>'; they feed the
    verdicts' silence term and are not a data set: leaderboard and report leave them out by default."""
    good = "test-board-good"
    with registered(*(c for c in BOARD_CARDS if c.name == good)):
        plan = make_plan(tmp_path, models=[good], data_dir="/data/set-a")
        run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=4), show_progress=False)
        items = dataclasses.replace(make_clipset(per_class=2, seed=3), protocol="v2-12-all-unknown:silence-test")
        run_plan(make_plan(tmp_path, models=[good], noise=[], snr=[], data_dir="/data/_background_noise_"),
                 loader=tiny_loader, noise=RmsNoise(), clipset=items, show_progress=False)
    with Store(plan.store) as st:
        assert {c.protocol for c in st.cells()} == {"test-12", "v2-12-all-unknown:silence-test"}
    assert {r["protocol"] for r in _csv(capsys, "--store", plan.store)} == {"test-12"}
    asked = _csv(capsys, "--store", plan.store, "--protocol", "v2-12-all-unknown:silence-test")
    assert {r["protocol"] for r in asked} == {"v2-12-all-unknown:silence-test"} and len(asked) == 1
    out = tmp_path / "report"
    assert main(["report", "--store", plan.store, "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "set-a" in html and "_background_noise_" not in html and "silence-test" not in html
