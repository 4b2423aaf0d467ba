"""The index as reviewable text in git: `registry/`, one small file per entry version.

    registry/<domain>/<task>/<architecture>/<dataset>/<sparse_tag>/v1.json   the entry
    registry/<domain>/<task>/<architecture>/<dataset>/<sparse_tag>/aliases.json

Version files never change once written (versions are immutable); `aliases.json` holds
the current aliases and their full history. The store's published index stays the
source of truth for clients; this mirror is what reviewers read and diff.

A folder mirrors one store's history. A store whose history of a stub differs from the
folder's (a fresh clone's own local store: its v1 is not the team's v1) is refused, the
folder left as it is, rather than have its versions rewritten and its aliases moved back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from zoo.errors import MirrorDivergedError
from zoo.fsutil import atomic_write_text
from zoo.index.schema import Entry, Stub, format_version
from zoo.index.view import IndexView, StubRecord, read_entry

ALIASES_FILE = "aliases.json"


def entry_path(registry: Path, stub: Stub, version: int) -> Path:
    return registry.joinpath(*stub.path.split("/"), f"{format_version(version)}.json")


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


def check_same_history(view: IndexView, stub: Stub, registry: str | os.PathLike[str]) -> None:
    """Raise MirrorDivergedError unless every version file of `stub` under `registry` is
    the store's version of that number (same content hash) and the store's alias history
    begins with the mirrored one. Equal content published into two stores is still two
    histories: their alias moves differ in time and generation."""
    folder = Path(registry).joinpath(*stub.path.split("/"))
    record = view.record(stub)
    ours = {s.version: s.content_hash for s in record.versions} if record else {}
    for path in sorted(folder.glob("v*.json")):
        mirrored = Entry.from_json(path.read_text())
        if mirrored.version not in ours:
            here = f"up to {format_version(max(ours))}" if ours else "none"
            detail = f"{path.name} is not in {view.store.url} (its versions: {here})"
        elif ours[mirrored.version] != mirrored.content_hash:
            detail = (
                f"{path.name} there has content hash {mirrored.content_hash[:12]}, "
                f"{view.store.url} has {ours[mirrored.version][:12]}"
            )
        else:
            continue
        raise _diverged(folder, stub, detail)
    aliases = _alias_history_differs(folder / ALIASES_FILE, record)
    if aliases:
        raise _diverged(folder, stub, aliases)


def _alias_history_differs(path: Path, record: StubRecord | None) -> str | None:
    """The store's alias history must extend the mirrored one (it only ever grows)."""
    if not path.is_file():
        return None
    try:
        mirrored = json.loads(path.read_text())["history"]
    except (ValueError, KeyError, TypeError):
        mirrored = None
    if not isinstance(mirrored, list):
        return f"{path.name} there is not an alias file (no history list)"
    ours = [e.to_dict() for e in record.history] if record else []
    for number, moved in enumerate(mirrored):
        if number >= len(ours) or ours[number] != moved:
            return f"{path.name} there records another alias history (from move {number + 1})"
    return None


def _diverged(folder: Path, stub: Stub, detail: str) -> MirrorDivergedError:
    return MirrorDivergedError(
        f"{folder} mirrors another store's history of {stub}: {detail}; left as it is. "
        "A registry folder mirrors one store (the team's): publish there to update it, "
        "or mirror this store into another folder (`zoo index mirror --out DIR`)"
    )


def mirror_stub(view: IndexView, stub: Stub, registry: str | os.PathLike[str]) -> list[Path]:
    """Write the stub's entries and aliases under `registry`; return the files changed."""
    root = Path(registry)
    record = view.record(stub)
    if record is None:
        return []
    check_same_history(view, stub, root)
    changed = []
    for summary in record.versions:
        path = entry_path(root, stub, summary.version)
        if path.is_file():  # the store's own version (checked above): immutable
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
    chosen = list(stubs if stubs is not None else view.stubs())
    for stub in chosen:  # all or nothing
        check_same_history(view, stub, registry)
    changed: list[Path] = []
    for stub in chosen:
        changed.extend(mirror_stub(view, stub, registry))
    return changed
