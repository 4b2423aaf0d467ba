from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from zoo.index.lineage import collect_lineage, producing_stages, stage_hash
from zoo.index.mirror import mirror_index
from zoo.index.publish import publish, set_alias
from zoo.index.schema import Entry, Lineage, Stub
from zoo.index.view import open_index
from zoo.storage.local import LocalStore

from .conftest import STUB

LOCK = {
    "schema": "2.0",
    "stages": {
        "prepare@fashion_mnist": {
            "cmd": "python pipelines/prepare_data.py",
            "outs": [{"path": "data/fashion_mnist", "md5": "d1.dir"}],
        },
        "prepare@digits": {
            "cmd": "python pipelines/prepare_data.py --dataset digits",
            "outs": [{"path": "data/digits", "md5": "d2.dir"}],
        },
        "train_vision": {
            "cmd": "python pipelines/train_dense.py",
            "deps": [{"path": "data/fashion_mnist", "md5": "d1.dir"}],
            "outs": [{"path": "models/dense/vision", "md5": "m1.dir"}],
        },
        "export_vision": {
            "cmd": "python pipelines/export.py",
            "deps": [{"path": "models/dense/vision", "md5": "m1.dir"}],
            "outs": [{"path": "models/export/vision", "md5": "e1.dir"}],
        },
    },
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_lineage_comes_from_git_and_the_producing_dvc_stages(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    _git(repo, "add", "dvc.lock")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock")
    export = repo / "models" / "export" / "vision"
    export.mkdir(parents=True)

    lineage = collect_lineage(Lineage(parent="zoo:cv/a/b/c/d@v1"), repo, export)
    assert lineage.git_commit == _git(repo, "rev-parse", "HEAD")
    assert lineage.git_dirty is False
    assert lineage.parent == "zoo:cv/a/b/c/d@v1"
    stages = LOCK["stages"]
    assert lineage.dvc_stages == {
        name: stage_hash(stages[name])  # type: ignore[index]
        for name in ("export_vision", "prepare@fashion_mnist", "train_vision")
    }

    (repo / "dvc.lock").write_text(yaml.safe_dump(LOCK) + "# edited\n")
    assert collect_lineage(Lineage(), repo, export).git_dirty is True
    # Fields the export stage set itself win over what is collected.
    given = Lineage(git_commit="abc", dvc_stages={"x": "y"})
    assert collect_lineage(given, repo, export).dvc_stages == {"x": "y"}


def test_outside_git_and_dvc_lineage_stays_empty(tmp_path: Path) -> None:
    lineage = collect_lineage(Lineage(), tmp_path, tmp_path)
    assert lineage.git_commit is None and lineage.dvc_stages == {}
    assert producing_stages({}, "models/x") == {}


def test_registry_mirror_is_one_file_per_version_plus_aliases(
    tmp_path: Path, store: LocalStore, tiny
) -> None:  # type: ignore[no-untyped-def]
    entries = [publish(tiny(f"m{i}", i), store).entry for i in range(2)]
    set_alias(store, Stub.parse(STUB), 1, "stable")
    registry = tmp_path / "registry"
    written = mirror_index(open_index(store), registry)
    folder = registry / "cv/classification/mlp/fashion_mnist/pruned50"
    assert sorted(p.name for p in folder.iterdir()) == ["aliases.json", "v1.json", "v2.json"]
    assert len(written) == 3
    for entry in entries:
        assert Entry.from_json((folder / f"v{entry.version}.json").read_text()) == entry
    aliases = json.loads((folder / "aliases.json").read_text())
    assert aliases["aliases"] == {"latest": "v2", "stable": "v1"}
    assert [e["alias"] for e in aliases["history"]] == ["latest", "latest", "stable"]
    assert mirror_index(open_index(store), registry) == []  # nothing changed, nothing written
