"""Lineage from the places that know it: git (commit, dirty tree) and `dvc.lock`.

The DVC stage hashes are those of the stages that produced the export folder: the stage
whose outputs contain it and, transitively, the stages whose outputs it depends on. A
stage's hash is the sha256 of its `dvc.lock` record (command, dependency and output
hashes, params), so it changes exactly when DVC would consider the stage changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from zoo.errors import SchemaError
from zoo.index.schema import Lineage, parse_ref, parse_version
from zoo.index.view import IndexView


def git_state(repo: str | os.PathLike[str]) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it); (None, None) outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(status.strip())


def read_dvc_lock(repo: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    path = Path(repo) / "dvc.lock"
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SchemaError(str(path), f"not valid YAML: {exc}") from exc
    stages = doc.get("stages", {}) if isinstance(doc, dict) else {}
    return {str(k): v for k, v in stages.items() if isinstance(v, dict)}


def stage_hash(record: dict[str, Any]) -> str:
    blob = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _under(path: str, out: str) -> bool:
    p, o = PurePosixPath(path), PurePosixPath(out)
    return p == o or o in p.parents or p in o.parents


def producing_stages(stages: dict[str, dict[str, Any]], target: str) -> dict[str, str]:
    """Stages that (transitively) produced `target` (a repo-relative path) -> their hash."""
    found: dict[str, str] = {}
    wanted = [target]
    while wanted:
        path = wanted.pop()
        for name, record in stages.items():
            if name in found:
                continue
            outs = [o.get("path", "") for o in record.get("outs", []) if isinstance(o, dict)]
            if any(_under(path, out) for out in outs):
                found[name] = stage_hash(record)
                wanted.extend(
                    d.get("path", "") for d in record.get("deps", []) if isinstance(d, dict)
                )
    return dict(sorted(found.items()))


def collect_lineage(
    base: Lineage, repo: str | os.PathLike[str], export_dir: str | os.PathLike[str]
) -> Lineage:
    """`base` (from zoo.json) completed with git state and producing DVC stages.

    Fields the export already set win: the export stage knows its parent and data hash.
    """
    commit, dirty = git_state(repo)
    try:
        rel = Path(os.path.realpath(export_dir)).relative_to(Path(os.path.realpath(repo)))
        stages = producing_stages(read_dvc_lock(repo), rel.as_posix())
    except ValueError:
        stages = {}
    return replace(
        base,
        git_commit=base.git_commit or commit,
        git_dirty=base.git_dirty if base.git_dirty is not None else dirty,
        dvc_stages=base.dvc_stages or stages,
    )


def pin_parent(lineage: Lineage, view: IndexView) -> Lineage:
    """`lineage` with its parent named as `stub@vN`.

    The export stage runs before its parent is published, so a parent made in the same
    pipeline is named by stub alone (or by an alias); it is pinned here, when the entry
    is registered, to the version the store's index names for it now. A parent that is
    not in the store is an error: register the parent first.
    """
    if lineage.parent is None:
        return lineage
    stub, ref = parse_ref(lineage.parent)
    if ref is not None and parse_version(ref) is not None:
        return lineage
    summary = view.resolve(stub, ref)
    return replace(lineage, parent=stub.at(summary.version))
