"""Checkpoint layer without the shared data: manifests, sha256, strict loading, key maps, unsafe files."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from kwsbench import checkpoints as ck
from kwsbench.cli import main
from kwsbench.errors import EXIT_CHECKPOINT, CheckpointError
from kwsbench.models.bcresnet import BCResNet

MODEL = "bc-resnet-1"  # a small registered model without public weights


@pytest.fixture()
def homes(tmp_path, monkeypatch):
    """An empty user manifest folder (added beside the packaged manifests) and checkpoint home."""
    mdir, home = tmp_path / "manifests", tmp_path / "home"
    mdir.mkdir()
    monkeypatch.setenv("KWSBENCH_MANIFESTS", str(mdir))
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(home))
    return mdir, home


def _trained_state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    model = BCResNet(1)
    # Non-default weights, so a load that silently kept the initial ones would be caught.
    out = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            out[key] = value
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(value.shape, generator=gen)
        else:
            out[key] = 0.3 * torch.randn(value.shape, generator=gen)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifest(mdir: Path, name: str, location: str, files: list[dict]) -> None:
    (mdir / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "location": location, "files": files}))


def _logits(model: torch.nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        out = model(0.1 * torch.randn(2, 16000, generator=gen))
    assert torch.isfinite(out).all()
    return out


def test_real_manifest_is_complete():
    m = ck.read_manifest(Path(ck.paths.PROJECT_ROOT) / "checkpoints" / "nc-ssm.yaml")
    assert m.name == "nc-ssm" and m.location == "home" and m.repository == "DrJinHoChoi/NC-SSM-TASLP2026"
    assert len(m.entries) == 11
    for e in m.entries:
        assert len(e.sha256) == 64 and e.size and e.source_path == f"checkpoints_full/{e.id}"
        assert e.commit and e.epoch is not None and e.val_acc is not None
    tiny_best = m.entry("NanoMamba-Tiny/best.pt")
    assert tiny_best.commit == "9ea118a"  # the historic 12-class best, not the HEAD file
    assert "academic" in m.licence.lower()
    assert m.source_url(tiny_best, "http://h") == (
        "http://h/DrJinHoChoi/NC-SSM-TASLP2026/9ea118a/checkpoints_full/NanoMamba-Tiny/best.pt")


def test_plain_file_roundtrip(tmp_path, homes):
    state = _trained_state()
    path = tmp_path / "w.pt"
    torch.save({"model_state_dict": state, "epoch": 3}, path)
    loaded = ck.load_model(MODEL, checkpoint=path)
    assert not loaded.module.training
    ref = BCResNet(1)
    ref.load_state_dict(state, strict=True)
    assert torch.equal(_logits(loaded.module), _logits(ref.eval()))
    assert loaded.sha256 == _sha(path) == ck.checkpoint_sha256(MODEL, path)
    assert loaded.labels == ()  # neither a manifest entry nor training metadata names the classes
    # A bare state dict (no wrapper) works too.
    torch.save(state, tmp_path / "bare.pt")
    assert torch.equal(_logits(ck.load_model(MODEL, checkpoint=tmp_path / "bare.pt").module), _logits(ref))


def test_manifest_reference_project_location_and_record(tmp_path, homes):
    mdir, _ = homes
    folder = mdir / "synth"
    folder.mkdir()
    torch.save({"model_state_dict": _trained_state()}, folder / "bc1.pt")
    entry = ck.record_checkpoint("synth", "bc1.pt", MODEL, epoch=4)
    assert entry.sha256 == _sha(folder / "bc1.pt")
    assert ck.load_model(MODEL, checkpoint="synth:bc1.pt").sha256 == entry.sha256
    # the user's synth manifest replaces the packaged one of that name; the packaged others stay listed
    assert [s.present for s in ck.status() if s.manifest == "synth"] == [True]
    assert {"nc-ssm", "gsc-mini"} <= {s.manifest for s in ck.status()}


def test_wrong_sha256_refused_before_unpickling(tmp_path, homes):
    mdir, home = homes
    (home / "pub" / "a").mkdir(parents=True)
    torch.save(_trained_state(), home / "pub" / "a" / "best.pt")
    _write_manifest(mdir, "pub", "home", [{"id": "a/best.pt", "model": MODEL, "sha256": "0" * 64}])
    with pytest.raises(CheckpointError, match=r"sha256.*a/best.pt|best.pt.*sha256") as err:
        ck.load_model(MODEL, checkpoint="pub:a/best.pt")
    assert "import" in str(err.value)


def test_plain_path_with_known_sha_is_verified_and_key_mapped(tmp_path, homes):
    mdir, _ = homes
    state = _trained_state()
    # A published file whose keys differ from the port's naming: declared rename in the manifest.
    renamed = {("legacy_head." + k[len("head."):] if k.startswith("head.") else k): v for k, v in state.items()}
    path = tmp_path / "legacy.pt"
    torch.save({"model_state_dict": renamed}, path)
    entry = {"id": "legacy.pt", "model": MODEL, "sha256": _sha(path),
             "key_map": [{"from": "legacy_head.", "to": "head."}]}
    _write_manifest(mdir, "pub", "home", [entry])
    model = ck.load_model(MODEL, checkpoint=path).module
    ref = BCResNet(1)
    ref.load_state_dict(state, strict=True)
    assert torch.equal(_logits(model), _logits(ref.eval()))
    # Without the declared rename the same file is refused (never a silent non-strict load).
    entry.pop("key_map")
    _write_manifest(mdir, "pub", "home", [entry])
    with pytest.raises(CheckpointError, match="missing keys: head"):
        ck.load_model(MODEL, checkpoint=path)


def test_missing_and_unexpected_keys_listed(tmp_path, homes):
    state = _trained_state()
    state.pop("classifier.weight")
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        ck.load_model(MODEL, checkpoint=path)
    msg = str(err.value)
    assert "bad.pt" in msg and "classifier.weight" in msg and "extra.weight" in msg and "non-strict" in msg


def test_wrong_shape_refused(tmp_path, homes):
    state = _trained_state()
    state["classifier.weight"] = torch.zeros(35, 32, 1, 1)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape.pt.*another shape.*classifier.weight \(35, 32, 1, 1\)"):
        ck.load_model(MODEL, checkpoint=tmp_path / "shape.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x80\x04garbage" * 10, b"hello world\n"])
def test_not_a_checkpoint(tmp_path, homes, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="junk.pt is not a torch checkpoint"):
        ck.load_model(MODEL, checkpoint=path)


def test_checkpoint_without_tensors(tmp_path, homes):
    torch.save({"epoch": 3, "val_acc": 90.0}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="no state dict"):
        ck.load_model(MODEL, checkpoint=tmp_path / "meta.pt")


class _Exploit:
    """Unpickling this would create (open for writing) the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_code_executing_pickle_refused(tmp_path, homes, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"model_state_dict": _trained_state(), "hook": _Exploit(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        # A legacy (non-zip) pickle; tensors left out so the first refused global is the exploit's.
        path.write_bytes(pickle.dumps({"hook": _Exploit(marker)}, protocol=2))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"evil.pt.*execute code.*Refused: GLOBAL .*open"):
        ck.load_model(MODEL, checkpoint=path)
    assert not marker.exists()


def test_missing_file_says_what_to_do(homes):
    mdir, _ = homes
    _write_manifest(mdir, "pub", "home", [{"id": "x/best.pt", "model": MODEL, "sha256": "1" * 64}])
    with pytest.raises(CheckpointError, match=r"kwsbench checkpoints import DIR.*fetch"):
        ck.load_model(MODEL, checkpoint="pub:x/best.pt")
    with pytest.raises(CheckpointError, match="no checkpoint 'y.pt'"):
        ck.load_model(MODEL, checkpoint="pub:y.pt")
    with pytest.raises(CheckpointError, match="no default checkpoint"):
        ck.load_model(MODEL)


def test_cli_verify_flags_corruption(tmp_path, homes, capsys):
    mdir, home = homes
    (home / "pub").mkdir(parents=True)
    good, bad = home / "pub" / "good.pt", home / "pub" / "bad.pt"
    torch.save(_trained_state(0), good)
    torch.save(_trained_state(1), bad)
    files = [{"id": "good.pt", "model": MODEL, "sha256": _sha(good)},
             {"id": "bad.pt", "model": MODEL, "sha256": _sha(bad)},
             {"id": "absent.pt", "model": MODEL, "sha256": "2" * 64}]
    _write_manifest(mdir, "pub", "home", files)
    assert main(["checkpoints", "verify"]) == 0
    assert main(["checkpoints", "list"]) == 0
    assert "absent.pt" in capsys.readouterr().out
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the archive
    bad.write_bytes(bytes(data))
    assert main(["checkpoints", "verify"]) == EXIT_CHECKPOINT
    assert "bad.pt" in capsys.readouterr().err


def test_cards_and_manifest_agree():
    """Every default checkpoint of a card names a manifest entry, and that entry names the same card."""
    from kwsbench.models.registry import all_cards, get_card

    known = ck.manifests(Path(ck.paths.PROJECT_ROOT) / "checkpoints")
    with_default = [c for c in all_cards() if c.checkpoint]
    for card in with_default:
        name, file_id = card.checkpoint.split(":", 1)
        assert name in known, card.name
        assert get_card(known[name].entry(file_id).model).name == card.name
    for entry in known["nc-ssm"].entries:
        assert get_card(entry.model).checkpoint == f"nc-ssm:{entry.id}", entry.id
