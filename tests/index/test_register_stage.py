"""The `register` stage script: publishes, mirrors into registry/, and is idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from zoo.index.schema import Stub
from zoo.index.view import open_index

from .conftest import STUB

REPO = Path(__file__).resolve().parents[2]


def _run_register(
    export: Path, tmp_path: Path, storage_url: object
) -> subprocess.CompletedProcess[str]:
    receipt = tmp_path / "receipt.json"
    (tmp_path / "params.yaml").write_text(json.dumps({"storage": {"url": storage_url}}))
    # $ZOO_STORE names another store: the stage must publish where its params say.
    env = {**os.environ, "ZOO_STORE": str(tmp_path / "not-this-store")}
    return subprocess.run(
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
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def _register(export: Path, tmp_path: Path) -> dict[str, object]:
    done = _run_register(export, tmp_path, str(tmp_path / "store"))
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads((tmp_path / "receipt.json").read_text())
    return result


def test_register_twice_registers_once(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    first = _run_register(export, tmp_path, str(tmp_path / "store"))
    assert first.stdout.startswith(f"registered: {STUB}@v1 ")
    receipt = (tmp_path / "receipt.json").read_bytes()
    assert json.loads(receipt) == {"ref": STUB + "@v1", "store": "store"}
    folder = tmp_path / "registry" / "cv/classification/mlp/fashion_mnist/pruned50"
    assert sorted(p.name for p in folder.iterdir()) == ["aliases.json", "v1.json"]
    second = _run_register(export, tmp_path, str(tmp_path / "store"))
    assert second.stdout.startswith(f"unchanged: {STUB}@v1 ")
    assert "registry files written: none" in second.stdout
    # the same bytes: DVC sees the stage's output unchanged, and stages after it stay put
    assert (tmp_path / "receipt.json").read_bytes() == receipt
    view = open_index(tmp_path / "store")  # type: ignore[arg-type]
    assert view.generation == 1 and len(list(view.summaries())) == 1


def _with_parent(export: Path, parent: str) -> Path:
    meta = json.loads((export / "zoo.json").read_text())
    meta["lineage"]["parent"] = parent
    (export / "zoo.json").write_text(json.dumps(meta))
    return export


def test_a_parent_named_by_stub_is_pinned_to_its_version(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    parent = "zoo:cv/classification/mlp/fashion_mnist/base"
    _register(tiny("parent", seed=1, stub=parent), tmp_path)
    _register(tiny("parent-v2", seed=2, stub=parent), tmp_path)
    child = _register(_with_parent(tiny("child"), parent), tmp_path)
    view = open_index(tmp_path / "store")  # type: ignore[arg-type]
    entry = view.entry(view.resolve(Stub.parse(STUB)).stub, 1)
    assert child["ref"] == entry.ref
    assert entry.lineage.parent == parent + "@v2"  # the version published when registered


def test_a_parent_missing_from_the_store_fails_the_stage(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    missing = "zoo:cv/classification/mlp/fashion_mnist/nowhere"
    _register(tiny("other", stub="zoo:cv/classification/mlp/fashion_mnist/base"), tmp_path)
    failed = _run_register(_with_parent(tiny("child"), missing), tmp_path, str(tmp_path / "store"))
    assert failed.returncode != 0
    assert f"stub {missing} is not registered" in failed.stderr
    view = open_index(tmp_path / "store")  # type: ignore[arg-type]
    assert Stub.parse(STUB) not in view.stubs()  # nothing published for the child


def test_a_child_registered_before_its_parent_publishes_the_parent_first(
    tmp_path: Path,
    tiny,  # type: ignore[no-untyped-def]
) -> None:
    """DVC may run the child's register stage first; the parent's export is beside it."""
    parent = "zoo:cv/classification/mlp/fashion_mnist/base"
    parent_dir = tiny("parent", seed=1, stub=parent)
    child = _register(_with_parent(tiny("child"), parent), tmp_path)
    view = open_index(tmp_path / "store")  # type: ignore[arg-type]
    assert view.entry(Stub.parse(STUB), 1).lineage.parent == parent + "@v1"
    assert (tmp_path / "registry/cv/classification/mlp/fashion_mnist/base/v1.json").is_file()
    own = _run_register(parent_dir, tmp_path, str(tmp_path / "store"))
    assert own.stdout.startswith(f"unchanged: {parent}@v1 ")  # the parent's own stage
    assert child["ref"] == STUB + "@v1"


def test_register_publishes_to_the_store_its_params_name(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    first = _register(tiny("a"), tmp_path)
    assert first["store"] == "store"  # inside the repository: kept relative
    assert open_index(tmp_path / "store").generation == 1  # type: ignore[arg-type]
    assert not (tmp_path / "not-this-store").exists()


def test_register_refuses_a_params_file_without_a_store(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    done = _run_register(tiny("a"), tmp_path, None)
    assert done.returncode != 0
    assert "storage.url must be a store URL" in done.stderr and "None" in done.stderr
    assert not (tmp_path / "receipt.json").exists() and not (tmp_path / "registry").exists()


def test_a_clone_with_its_own_store_leaves_the_committed_registry_alone(
    tmp_path: Path, tiny
) -> None:  # type: ignore[no-untyped-def]
    """registry/ mirrors the team's store; a fresh clone's stage publishes into its own,
    empty store (another v1) and must neither fail nor rewrite the team's files."""
    team = _run_register(tiny("team", seed=1), tmp_path, str(tmp_path / "team"))
    assert team.returncode == 0, team.stderr
    registry = tmp_path / "registry"
    before = {p: p.read_bytes() for p in registry.rglob("*.json")}
    own = _run_register(tiny("own", seed=2), tmp_path, str(tmp_path / "own"))
    assert own.returncode == 0, own.stderr
    assert own.stdout.startswith(f"registered: {STUB}@v1 ")
    assert f"registry/ not mirrored: {registry}" in own.stdout
    assert "mirrors another store's history" in own.stdout
    assert {p: p.read_bytes() for p in registry.rglob("*.json")} == before
    receipt = json.loads((tmp_path / "receipt.json").read_text())
    assert receipt == {"ref": STUB + "@v1", "store": "own"}
    assert open_index(tmp_path / "own").generation == 1  # type: ignore[arg-type]
