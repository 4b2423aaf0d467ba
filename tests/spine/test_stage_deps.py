"""Stage dependencies that cannot be wrong: every file a stage script can import is a dep.

The import closure is computed from the code (tests/spine/import_closure.py), never listed
by hand, so the check keeps holding while modules move. The second test is DVC's own view:
in a copy of the repository whose dvc.lock is committed, editing a module a stage imports
(not directly: through the chain) makes `dvc status` report that stage's deps changed.
"""

from __future__ import annotations

import json
import shlex
from functools import cache
from pathlib import Path

import pytest

from tests.spine.import_closure import ImportClosure, covered, minimal_deps
from tests.spine.repo_copy import REPO, copy_repo, run


@cache
def stage_scripts() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every stage of dvc.yaml (foreach expanded by DVC) -> (its script, its deps)."""
    from dvc.repo import Repo

    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            words = shlex.split(stage.cmd if isinstance(stage.cmd, str) else stage.cmd[0])
            scripts = [w for w in words if w.endswith(".py")]
            assert words[0] == "python" and scripts, f"{stage.addressing}: runs no script"
            deps = tuple(str(d.def_path) for d in stage.deps)
            out[stage.addressing] = (scripts[0], deps)
    return out


@cache
def closure(script: str) -> frozenset[str]:
    files = ImportClosure(REPO, packages=("zoo", "pipelines")).of(REPO / script)
    return frozenset(str(p.relative_to(REPO)) for p in files)


def test_the_closure_follows_lazy_imports_and_import_tables() -> None:
    compress = closure("pipelines/compress.py")
    # imported inside a function of zoo.pipeline.stage, not at the top of the script
    assert "zoo/pipeline/entries.py" in compress
    # named only in the recipe registry's table, imported by importlib at parse time
    assert "zoo/modifiers/weight_sharing.py" in compress or any(
        f.startswith("zoo/modifiers/weight_sharing/") for f in compress
    )
    # packages above an imported module run too
    assert {"zoo/__init__.py", "zoo/modifiers/__init__.py"} <= compress
    # zoo/__init__'s lazy `zoo.search` (-> zoo.client.api) is never asked for by prepare
    assert not any(f.startswith("zoo/client/") for f in closure("pipelines/prepare_data.py"))


@pytest.mark.parametrize("stage", sorted(stage_scripts()))
def test_every_imported_file_is_a_declared_dep(stage: str) -> None:
    script, deps = stage_scripts()[stage]
    missing = sorted(f for f in closure(script) if not covered(f, list(deps)))
    assert not missing, (
        f"dvc.yaml stage {stage!r} runs {script}, which imports {missing} without declaring "
        f"them as deps: DVC would call its outputs up to date after they change. "
        f"A dep list covering exactly its imports: {minimal_deps(set(closure(script)), REPO)}"
    )


@pytest.mark.parametrize("stage", sorted(stage_scripts()))
def test_every_declared_code_dep_exists(stage: str) -> None:
    """A module moved or renamed (say, into a package) leaves a dep DVC cannot find."""
    script, deps = stage_scripts()[stage]
    gone = [d for d in deps if d.startswith(("zoo/", "pipelines/")) and not (REPO / d).exists()]
    assert not gone, (
        f"dvc.yaml stage {stage!r} declares deps that do not exist: {gone}. "
        f"A dep list covering exactly its imports: {minimal_deps(set(closure(script)), REPO)}"
    )


def _refresh_locked_deps(repo: Path, stages: list[str]) -> None:
    """Record today's dep hashes of `stages` in dvc.lock, as `dvc commit` does after a run
    (their outputs are not here, so only the deps are saved)."""
    code = (
        "import sys\nfrom dvc.repo import Repo\nwith Repo('.') as r:\n"
        "    for s in r.index.stages:\n"
        "        if s.addressing in sys.argv[1:]:\n"
        "            s.save_deps(allow_missing=True)\n"
        "            s.dump(update_pipeline=False)\n"
    )
    done = run(["python", "-c", code, *stages], cwd=repo)
    assert done.returncode == 0, done.stderr


def _changed_deps(repo: Path, stages: list[str]) -> dict[str, set[str]]:
    done = run(["dvc", "status", "--json", *stages], cwd=repo)
    assert done.returncode == 0, done.stderr
    changed: dict[str, set[str]] = {name: set() for name in stages}
    for name, reports in json.loads(done.stdout or "{}").items():
        for report in reports:
            if isinstance(report, dict):
                changed.setdefault(name, set()).update(report.get("changed deps", {}))
    return changed


def test_editing_a_module_a_stage_imports_makes_dvc_see_the_stage_changed(
    tmp_path: Path,
) -> None:
    # One stage per script; for each, the module its closure reaches last (an indirect one).
    chosen: dict[str, tuple[str, str]] = {}
    for stage, (script, _) in stage_scripts().items():
        if all(script != s for s, _ in chosen.values()):
            direct = {
                str(p.relative_to(REPO))
                for p in ImportClosure(REPO, ("zoo", "pipelines")).imported_files(REPO / script)
            }
            indirect = sorted(closure(script) - direct - {script}) or sorted(closure(script))
            chosen[stage] = (script, indirect[-1])
    repo = copy_repo(tmp_path / "repo")
    stages = sorted(chosen)
    _refresh_locked_deps(repo, stages)
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", "lock", "--allow-empty"]):
        assert run(cmd, cwd=repo).returncode == 0
    code_deps = {
        s: {d for d in stage_scripts()[s][1] if d.startswith(("zoo", "pipelines"))} for s in stages
    }
    before = _changed_deps(repo, stages)
    assert all(not (before[s] & code_deps[s]) for s in stages), before

    for _, module in chosen.values():
        with open(repo / module, "a") as f:
            f.write("\n# an edit DVC must notice\n")
    after = _changed_deps(repo, stages)
    for stage, (_, module) in chosen.items():
        owning = {d for d in after[stage] if covered(module, [d])}
        assert owning, f"{stage}: editing {module} left the stage up to date ({after[stage]})"


def test_every_demo_entry_is_a_dvc_model_artifact() -> None:
    """dvc.yaml's `artifacts:` name each demo entry's export folder, with its stub."""
    from dvc.repo import Repo

    from zoo.pipeline.compose import compose

    demo = compose(REPO / "conf", [])["zoo"]
    with Repo(str(REPO)) as repo:
        artifacts = repo.artifacts.read()["dvc.yaml"]
        export_outs = {
            stage.addressing: [str(o.def_path) for o in stage.outs]
            for stage in repo.index.stages
            if stage.addressing.startswith("export@")
        }
    assert sorted(artifacts) == sorted(demo)
    for key, artifact in artifacts.items():
        assert artifact.type == "model"
        assert [artifact.path] == export_outs[f"export@{key}"]
        assert artifact.desc == demo[key]["stub"]
