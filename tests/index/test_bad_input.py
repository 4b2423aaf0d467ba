"""Bad export folders and stubs: a clear error, a non-zero exit, and nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.errors import ExportError, InvalidStubError, SchemaError
from zoo.index.publish import publish

from .conftest import STUB


def _listed(export: Path, files: list[str]) -> None:
    meta = json.loads((export / "zoo.json").read_text())
    meta["files"] = files
    (export / "zoo.json").write_text(json.dumps(meta))


def _refuse(export: Path, store: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code = main(["publish", str(export), "--store", str(store), *extra])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("zoo: error: ")
    assert not store.exists(), "a refused publish must not write anything"
    return err


def test_invalid_stub_on_the_command_line(tmp_path: Path, tiny, capsys) -> None:  # type: ignore[no-untyped-def]
    err = _refuse(tiny("a"), tmp_path / "store", capsys, "--stub", "zoo:cv/Classification/x")
    assert "invalid stub" in err


def test_invalid_stub_in_zoo_json(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a", stub="zoo:cv/classification/mlp")
    with pytest.raises(InvalidStubError, match="expected 5 facets"):
        publish(export, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_a_version_in_the_stub_is_refused(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match="publishing assigns it"):
        publish(tiny("a"), tmp_path / "store", stub="zoo:cv/classification/mlp/mnist/dense@v3")


@pytest.mark.parametrize("bad", ["../outside.txt", "samples/../../outside.txt", "/etc/hostname"])
def test_paths_escaping_the_export_folder(tmp_path: Path, tiny, capsys, bad: str) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    (tmp_path / "exports" / "outside.txt").write_text("secret")
    _listed(export, ["model.safetensors", bad])
    err = _refuse(export, tmp_path / "store", capsys)
    assert "escapes the export folder" in err and bad in err


def test_symlinked_file_pointing_out(tmp_path: Path, tiny, capsys) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not publish")
    os.symlink(secret, export / "notes.txt")
    err = _refuse(export, tmp_path / "store", capsys)
    assert "symlink" in err and "outside the export folder" in err


def test_symlinked_folder_pointing_out(tmp_path: Path, tiny, capsys) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.bin").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", export / "extra")
    err = _refuse(export, tmp_path / "store", capsys)
    assert "symlink" in err and "extra" in err


def test_a_symlink_inside_the_folder_is_fine(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    os.symlink(export / "README.md", export / "MODEL_CARD.md")
    entry = publish(export, tmp_path / "store").entry
    assert entry.file("MODEL_CARD.md").sha256 == entry.file("README.md").sha256


def test_missing_listed_file(tmp_path: Path, tiny, capsys) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    _listed(export, ["model.safetensors", "samples/missing.safetensors"])
    err = _refuse(export, tmp_path / "store", capsys)
    assert "samples/missing.safetensors" in err and "missing" in err


def test_missing_metadata_and_missing_folder(tmp_path: Path, tiny, capsys) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    (export / "zoo.json").unlink()
    assert "zoo.json is missing" in _refuse(export, tmp_path / "store", capsys)
    assert "does not exist" in _refuse(tmp_path / "nope", tmp_path / "store", capsys)


def test_malformed_metadata(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    meta = json.loads((export / "zoo.json").read_text())
    meta["sparsity"] = {"overall": 0.5, "colour": "red"}
    meta["surprise"] = 1
    (export / "zoo.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="surprise"):
        publish(export, tmp_path / "store")
    (export / "zoo.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        publish(export, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_corrupt_safetensors_is_refused(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    data = (export / "model.safetensors").read_bytes()
    (export / "model.safetensors").write_bytes(data[:-10])
    with pytest.raises(SchemaError, match=r"truncated|does not match"):
        publish(export, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_publish_into_a_registry_folder_of_another_store(tmp_path: Path, tiny, capsys) -> None:  # type: ignore[no-untyped-def]
    """The publish stands (it is in the store); the mirror is refused, exit 2, and says so."""
    registry = tmp_path / "registry"
    assert main(["publish", str(tiny("a", 1)), "--store", str(tmp_path / "team"),
                 "--registry-dir", str(registry)]) == 0  # fmt: skip
    capsys.readouterr()
    before = {p: p.read_bytes() for p in registry.rglob("*.json")}
    code = main(["publish", str(tiny("b", 2)), "--store", str(tmp_path / "own"),
                 "--registry-dir", str(registry)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"zoo: error: published {STUB}@v1 in {tmp_path / 'own'}, but ")
    assert "mirrors another store's history" in err
    assert {p: p.read_bytes() for p in registry.rglob("*.json")} == before
