"""The `register` stage script: publishes, mirrors into registry/, and is idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from zoo.index.view import open_index

from .conftest import STUB

REPO = Path(__file__).resolve().parents[2]


def _register(export: Path, tmp_path: Path) -> dict[str, object]:
    receipt = tmp_path / "receipt.json"
    env = {**os.environ, "ZOO_STORE": str(tmp_path / "store")}
    subprocess.run(
        [
            sys.executable,
            str(REPO / "pipelines" / "register.py"),
            "--export",
            str(export),
            "--receipt",
            str(receipt),
            "--registry-dir",
            str(tmp_path / "registry"),
            "--repo",
            str(tmp_path),
            "--alias",
            "stable",
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    result: dict[str, object] = json.loads(receipt.read_text())
    return result


def test_register_twice_registers_once(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    first = _register(export, tmp_path)
    assert first["ref"] == STUB + "@v1" and first["created"] is True
    folder = tmp_path / "registry" / "cv/classification/mlp/fashion_mnist/pruned50"
    assert sorted(p.name for p in folder.iterdir()) == ["aliases.json", "v1.json"]
    second = _register(export, tmp_path)
    assert second["created"] is False and second["generation"] == first["generation"]
    assert second["registry_files"] == []
    view = open_index(tmp_path / "store")  # type: ignore[arg-type]
    assert view.generation == 1 and len(list(view.summaries())) == 1
