"""baselines/*.yaml: every file loads and validates; values agree with the reference tables."""

from __future__ import annotations

import re

import pytest
from helpers import stored_cell

from kwsbench.cli import main
from kwsbench.errors import BadInputError
from kwsbench.results.baselines import Reported, baselines_dir, load_baseline_file, load_baselines
from kwsbench.results.verdicts import DEVIATES, MATCH, NOT_COMPARABLE, WITHIN_CI, verdict


def test_all_baseline_files_validate(capsys):
    assert main(["baselines", "validate"]) == 0
    out = capsys.readouterr().out
    files = sorted(p.name for p in baselines_dir().glob("*.yaml"))
    assert len(files) >= 8 and all(f"ok  {f}" in out for f in files)


def test_rows_carry_protocol_source_and_flag():
    rows = load_baselines()
    assert all(r.protocol and r.source and r.verification for r in rows)
    papers = {r.paper.split(",")[0] for r in rows}
    assert len(papers) >= 8


def test_ncssm_table_iv_matches_reference_text(shared):
    """Each Table IV row of the reference appears with the same seven values in the YAML."""
    text = (shared / "reference" / "nc-ssm.md").read_text()
    section = text[text.index("**Table IV"):text.index("**Figures")]
    rows = [r for r in load_baselines() if r.source.startswith("TASLP draft Table IV")]
    names = {"NC-SSM": "nc-ssm", "NC-SSM-Large": "nc-ssm-large", "NC-SSM-15K": "nc-ssm-15k",
             "NC-SSM-20K": "nc-ssm-20k", "DS-CNN-S": "ds-cnn-s", "BC-ResNet-1": "bc-resnet-1-ncssm"}
    found = re.findall(r"^\| (\w+) \| ([\w-]+) \| [\d.]+ \| ([\d. |]+)\|$", section, re.M)
    assert len(found) == 30
    for noise, model, rest in found:
        want = [float(v) for v in rest.split("|") if v.strip()]
        got = [r.value for r in sorted((r for r in rows if r.model == names[model] and
                                        r.noise.startswith(noise.lower())), key=lambda r: r.snr_db)]
        assert got == want, (noise, model)


def test_bad_baseline_files_are_rejected(tmp_path):
    good = "paper: p\nrows:\n  - {model: m, protocol: v2-12-official, classes: 12, split: test, condition: clean, " \
           "value: 90, source: s, verification: P}\n"
    (tmp_path / "a.yaml").write_text(good)
    assert len(load_baseline_file(tmp_path / "a.yaml")) == 1
    for bad, match in [(good.replace("value: 90", "value: 190"), "within 0..100"),
                       (good.replace("value: 90", "value: ninety"), "value must be a number"),
                       (good.replace("verification: P", "verification: X"), "verification"),
                       (good.replace("condition: clean", "condition: noisy"), "condition"),
                       (good.replace("source: s,", "source: s, colour: red,"), "unknown key"),
                       (good + good.split("rows:\n")[1], "duplicate")]:
        (tmp_path / "b.yaml").write_text(bad)
        with pytest.raises(BadInputError, match=match):
            load_baseline_file(tmp_path / "b.yaml")
    assert main(["baselines", "validate", "--dir", str(tmp_path)]) == 5


def _rep(**kw) -> Reported:
    base = dict(paper="p", model="m", protocol="v2-12-official", classes=12, split="test", noise="clean", snr_db=None,
                snr_def="", rate_hz=16000, metric="accuracy", value=90.0, source="s", verification="P")
    base.update(kw)
    return Reported(**base)


def _cell(acc, lo, hi, **kw):
    return stored_cell(accuracy=acc, ci_low=lo, ci_high=hi, **kw)


def test_verdicts():
    assert verdict(_rep(value=91.5), _cell(0.90, 0.88, 0.92), tol=2.0).verdict == MATCH
    assert verdict(_rep(value=87.5), _cell(0.90, 0.80, 0.95), tol=2.0).verdict == WITHIN_CI
    assert verdict(_rep(value=80.0), _cell(0.90, 0.88, 0.92), tol=2.0).verdict == DEVIATES
    v = verdict(_rep(protocol="v2-12-all-unknown", value=80.0), _cell(0.90, 0.88, 0.92))
    assert v.verdict == NOT_COMPARABLE and "protocol" in v.reasons[0]
    assert verdict(_rep(split="validation"), _cell(0.90, 0.88, 0.92)).verdict == NOT_COMPARABLE
    assert verdict(_rep(classes=35), _cell(0.90, 0.88, 0.92)).verdict == NOT_COMPARABLE
    noisy = dict(noise="white", snr_db=0.0)
    assert verdict(_rep(snr_def="active", **noisy), _cell(0.9, 0.88, 0.92, snr_def="rms", **noisy)).verdict \
        == NOT_COMPARABLE
    assert verdict(_rep(verification="U"), _cell(0.90, 0.88, 0.92)).verdict == NOT_COMPARABLE
    # |delta| == tol is a MATCH (inclusive, as the original script)
    assert verdict(_rep(value=92.0), _cell(0.90, 0.895, 0.905), tol=2.0).verdict == MATCH
