"""`zoo reproduce`: refusals and --check-only, on the registry entries the demo committed.

The rebuild itself (worktree, `dvc repro`, comparison, exit 1 on an altered metric) runs
on the smoke pipeline's output in tests/spine/test_pipeline_smoke.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from tests.spine.repo_copy import REPO, pipeline_env
from zoo.index.export import read_export, write_synthetic_export
from zoo.index.mirror import mirror_stub
from zoo.index.publish import publish
from zoo.index.view import open_index

ZOO = [sys.executable, "-m", "zoo.cli"]


def _demo_entry() -> tuple[str, Path]:
    """A registered demo entry with full lineage, as the register stage wrote it."""
    for path in sorted((REPO / "registry").rglob("v1.json")):
        entry = json.loads(path.read_text())
        if entry["lineage"].get("dvc_stages") and entry["lineage"].get("git_commit"):
            return f"{entry['stub']}@v1", path
    raise AssertionError("no registry entry with lineage in this checkout")


def _zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZOO, *args], cwd=cwd, env=pipeline_env(), capture_output=True, text=True, timeout=120
    )


def _clone_without_history(dest: Path, entries: Sequence[Path] = ()) -> Path:
    """A one-commit git repository with the project's dvc.yaml, whatever `dest` already
    holds, and copies of the given registry entries (none of the project's history)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "dvc.yaml", dest / "dvc.yaml")
    for path in entries:
        target = dest / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    _commit(dest, "init")
    return dest


def _commit(repo: Path, message: str) -> None:
    env = pipeline_env()
    if not (repo / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo, check=True, env=env)


def test_check_only_compares_the_committed_dvc_lock() -> None:
    ref, _ = _demo_entry()
    result = _zoo("reproduce", ref, "--check-only", "--json", cwd=REPO)
    report = json.loads(result.stdout)
    stages = [row for row in report["rows"] if row["what"].startswith("stage ")]
    assert any(row["what"].startswith("stage export@") for row in stages)
    assert any(row["what"].startswith("stage prepare@") for row in stages)
    # The verdict and the exit status follow the rows, whichever way this checkout is.
    assert result.returncode == (0 if all(row["ok"] for row in stages) else 1)


def test_check_only_reports_a_stage_the_lock_records_differently(tmp_path: Path) -> None:
    ref, path = _demo_entry()
    clone = _clone_without_history(tmp_path / "clone", [path])
    # The committed dvc.lock names the entry's stages but records other runs of them.
    lock = REPO.joinpath("dvc.lock").read_text().replace("cmd: python", "cmd: python3")
    (clone / "dvc.lock").write_text(lock)
    _commit(clone, "lock")
    result = _zoo("reproduce", ref, "--check-only", cwd=clone)
    assert result.returncode == 1
    assert "MISMATCH" in result.stdout and "no longer records" in result.stdout


def test_outside_a_clone_of_the_project_is_refused(tmp_path: Path) -> None:
    ref, _ = _demo_entry()
    result = _zoo("reproduce", ref, cwd=tmp_path)
    assert result.returncode == 2
    assert "not inside a git clone of the zoo project" in result.stderr


def test_a_commit_missing_from_the_clone_is_refused_before_any_work(tmp_path: Path) -> None:
    ref, path = _demo_entry()
    clone = _clone_without_history(tmp_path / "clone", [path])
    result = _zoo("reproduce", ref, cwd=clone)
    assert result.returncode == 2
    commit = json.loads(path.read_text())["lineage"]["git_commit"]
    assert f"commit {commit[:12]}, which this clone does not have" in result.stderr
    worktrees = subprocess.run(
        ["git", "worktree", "list"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert len(worktrees.stdout.splitlines()) == 1  # nothing half-made


def test_an_entry_without_lineage_is_refused(tmp_path: Path) -> None:
    # Published by hand (`zoo publish`), not by the register stage: no DVC stages.
    export = read_export(write_synthetic_export(tmp_path / "export", seed=1))
    store = tmp_path / "store"
    result = publish(export, str(store))
    clone = tmp_path / "clone"
    mirror_stub(open_index(store), result.entry.stub, clone / "registry")
    _clone_without_history(clone)
    done = _zoo("reproduce", result.entry.ref, cwd=clone)
    assert done.returncode == 2
    assert "has no lineage to reproduce from" in done.stderr


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("git_commit", "../../etc/passwd", "lineage git commit '../../etc/passwd' is malformed"),
        ("dvc_stages", {"export@..": "0" * 64}, "stage name 'export@..' is malformed"),
        ("dvc_stages", {"export@a": "HEAD"}, "malformed hash 'HEAD'"),
    ],
)
def test_a_tampered_lineage_is_refused_before_it_reaches_git_or_a_path(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    ref, path = _demo_entry()
    clone = _clone_without_history(tmp_path / "clone", [path])
    copy = clone / path.relative_to(REPO)
    entry = json.loads(copy.read_text())
    entry["lineage"][field] = value
    copy.write_text(json.dumps(entry))
    result = _zoo("reproduce", ref, cwd=clone)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "ref", ["zoo:cv/classification/cnn_small/fashion_mnist/pruned80", "nonsense"]
)
def test_a_ref_without_a_pinned_version_is_refused(ref: str) -> None:
    result = _zoo("reproduce", ref, "--check-only", cwd=REPO)
    assert result.returncode == 2 and "zoo: error:" in result.stderr


def _entry_with_own_stages() -> str:
    """A demo entry whose lineage holds compress, evaluate, benchmark and export of it."""
    for path in sorted((REPO / "registry").rglob("v1.json")):
        stages = json.loads(path.read_text())["lineage"].get("dvc_stages") or {}
        kinds = {name.split("@")[0] for name in stages if "@" in name}
        if {"compress", "evaluate", "benchmark", "export"} <= kinds:
            entry = json.loads(path.read_text())
            return f"{entry['stub']}@v1"
    raise AssertionError("no registry entry with a full lineage in this checkout")


def test_pull_inputs_rebuilds_the_entrys_own_stages_in_pipeline_order() -> None:
    from zoo.reproduce import entry_key, entry_stages, load_entry, own_stages

    params = (REPO / "params.yaml").read_text()
    for path in sorted((REPO / "registry").rglob("v1.json")):
        if not json.loads(path.read_text())["lineage"].get("dvc_stages"):
            continue
        entry = load_entry(REPO / "registry", f"{json.loads(path.read_text())['stub']}@v1")
        stages = entry_stages(entry)
        exports = [name for name in stages if name.startswith("export@")]
        if len(exports) < 3:
            continue
        # A transfer entry: its lineage also exports its registered parent and the
        # parent's baseline; its key is the one params.yaml gives its stub.
        key = entry_key(entry, stages, params)
        assert yaml.safe_load(params)["zoo"][key]["stub"] == str(entry.stub)
        own = own_stages(stages, key)
        assert own == [f"compress@{key}", f"evaluate@{key}", f"benchmark@{key}", f"export@{key}"]
        # Everything else (data, the parent, its own stages) is restored, not rebuilt.
        assert any(name.startswith("register@") for name in set(stages) - set(own))
        return
    raise AssertionError("no registry entry with a transfer lineage in this checkout")


def test_pull_inputs_with_check_only_is_refused() -> None:
    result = _zoo("reproduce", _entry_with_own_stages(), "--check-only", "--pull-inputs", cwd=REPO)
    assert result.returncode == 2 and "--check-only runs nothing" in result.stderr


def test_pull_inputs_missing_from_the_dvc_cache_is_a_clear_error(tmp_path: Path) -> None:
    # A clone with the whole history but an empty DVC cache and no remote.
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--shared", str(REPO), str(clone)], check=True, env=pipeline_env()
    )
    result = _zoo("reproduce", _entry_with_own_stages(), "--pull-inputs", cwd=clone)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "restoring the entry's inputs" in result.stderr
    assert "from the clone's DVC cache (no default remote to pull from)" in result.stderr
    assert "reproduce without --pull-inputs" in result.stderr
    worktrees = subprocess.run(
        ["git", "worktree", "list"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert len(worktrees.stdout.splitlines()) == 1  # the temporary worktree is gone
    assert not list(clone.glob(".dvc/cache/*"))  # nothing written into the clone's cache


def test_a_loss_gets_the_relative_tolerance_even_below_one() -> None:
    from zoo.reproduce import within

    assert within(0.38, 0.395, "loss") == (True, "±5%")  # 4% off: a loss, relative
    assert within(0.38, 0.40, "loss")[0] is False  # 5.3% off
    assert within(0.863, 0.871, "accuracy") == (True, "±0.01")  # a fraction, absolute
    assert within(0.863, 0.875, "accuracy")[0] is False
