from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from zoo.errors import MirrorDivergedError
from zoo.index.lineage import collect_lineage, producing_stages, stage_hash
from zoo.index.mirror import mirror_index, mirror_stub
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


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


def test_a_store_with_another_history_never_rewrites_the_mirror(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    """A fresh clone's own store publishes its v1; the committed registry/ holds the team's
    v1 and v2. Mirroring the clone's store there is refused and changes no file."""
    team, clone = LocalStore(tmp_path / "team"), LocalStore(tmp_path / "clone")
    for seed in (1, 2):
        publish(tiny(f"team{seed}", seed), team)
    registry = tmp_path / "registry"
    mirror_index(open_index(team), registry)
    before = _snapshot(registry)
    publish(tiny("own", 3), clone)
    other = "zoo:cv/classification/mlp/mnist/pruned50"  # a stub registry/ has not seen
    publish(tiny("new", 4, stub=other), clone)
    with pytest.raises(MirrorDivergedError) as raised:
        mirror_index(open_index(clone), registry)
    message = str(raised.value)
    assert f"mirrors another store's history of {STUB}" in message
    assert "v1.json there has content hash" in message and "left as it is" in message
    assert _snapshot(registry) == before  # all or nothing: not even the new stub


def test_a_store_behind_the_mirror_is_refused(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    """An old copy of the team's store would move `latest` back to its last version."""
    team = LocalStore(tmp_path / "team")
    publish(tiny("a", 1), team)
    shutil.copytree(tmp_path / "team", tmp_path / "old")
    publish(tiny("b", 2), team)
    registry = tmp_path / "registry"
    mirror_index(open_index(team), registry)
    before = _snapshot(registry)
    with pytest.raises(
        MirrorDivergedError, match=r"v2.json is not in .*old \(its versions: up to v1\)"
    ):
        mirror_stub(open_index(LocalStore(tmp_path / "old")), Stub.parse(STUB), registry)
    assert _snapshot(registry) == before
    publish(tiny("c", 3), team)  # the team's own store goes on mirroring
    written = mirror_stub(open_index(team), Stub.parse(STUB), registry)
    assert sorted(p.name for p in written) == ["aliases.json", "v3.json"]


def test_equal_content_in_another_store_is_still_another_history(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    """The same export published into two stores: the same v1 (content hash), but its alias
    moves differ in time, so the team's aliases.json is not rewritten with the clone's."""
    export = tiny("same", 1)
    team, clone = LocalStore(tmp_path / "team"), LocalStore(tmp_path / "clone")
    assert publish(export, team).entry.content_hash == publish(export, clone).entry.content_hash
    registry = tmp_path / "registry"
    mirror_index(open_index(team), registry)
    before = _snapshot(registry)
    with pytest.raises(MirrorDivergedError, match=r"another alias history \(from move 1\)"):
        mirror_index(open_index(clone), registry)
    assert _snapshot(registry) == before
