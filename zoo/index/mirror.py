"""The index as reviewable text in git: `registry/`, one small file per entry version.

    registry/<domain>/<task>/<architecture>/<dataset>/<sparse_tag>/v1.json   the entry
    registry/<domain>/<task>/<architecture>/<dataset>/<sparse_tag>/aliases.json

Version files never change once written (versions are immutable); `aliases.json` holds
the current aliases and their full history. The store's published index stays the
source of truth for clients; this mirror is what reviewers read and diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from zoo.fsutil import atomic_write_text
from zoo.index.schema import Entry, Stub, format_version
from zoo.index.view import IndexView, read_entry

ALIASES_FILE = "aliases.json"


def entry_path(registry: Path, stub: Stub, version: int) -> Path:
    return registry.joinpath(*stub.path.split("/"), f"{format_version(version)}.json")


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


def mirror_stub(view: IndexView, stub: Stub, registry: str | os.PathLike[str]) -> list[Path]:
    """Write the stub's entries and aliases under `registry`; return the files changed."""
    root = Path(registry)
    record = view.record(stub)
    if record is None:
        return []
    changed = []
    for summary in record.versions:
        path = entry_path(root, stub, summary.version)
        if path.is_file():
            # Immutable: an existing version file is only rewritten if it differs.
            existing = Entry.from_json(path.read_text())
            if existing.content_hash == summary.content_hash:
                continue
        entry = read_entry(view.store, summary.entry_sha256)
        if _write_if_changed(path, entry.to_json()):
            changed.append(path)
    aliases = {
        "stub": str(stub),
        "aliases": {k: format_version(v) for k, v in sorted(record.aliases.items())},
        "history": [e.to_dict() for e in record.history],
    }
    alias_path = root.joinpath(*stub.path.split("/"), ALIASES_FILE)
    if _write_if_changed(alias_path, json.dumps(aliases, indent=2, sort_keys=True) + "\n"):
        changed.append(alias_path)
    return changed


def mirror_index(
    view: IndexView, registry: str | os.PathLike[str], stubs: Iterable[Stub] | None = None
) -> list[Path]:
    changed: list[Path] = []
    for stub in stubs if stubs is not None else view.stubs():
        changed.extend(mirror_stub(view, stub, registry))
    return changed
