"""The register stage: publish an export folder, its lineage completed and its parent
pinned to `stub@vN`, and mirror what changed into registry/.

A parent made in the same pipeline (the dense entry a pruned one was made beside) is
named by stub alone in the export: its version is decided when it is published, and DVC
may run the child's register stage first. Then the parent's export folder (a sibling
under models/export/, which DVC builds before this stage) is published first, exactly as
its own register stage will (which then finds it published and changes nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from zoo.errors import MirrorDivergedError, StubNotFoundError
from zoo.index.export import META_FILE
from zoo.index.publish import PublishResult
from zoo.index.schema import Stub, parse_ref
from zoo.storage.base import Store, open_store


@dataclass(frozen=True)
class Registered:
    result: PublishResult
    changed: list[Path]  # files written under the registry folder
    store: Store
    not_mirrored: str | None = None  # why registry/ was left as it is


def register_export(
    export_dir: Path,
    store_url: str | None,
    registry_dir: Path,
    repo: Path,
    stub: str | None = None,
    aliases: tuple[str, ...] = (),
) -> Registered:
    from zoo.index.export import read_export
    from zoo.index.lineage import collect_lineage, pin_parent
    from zoo.index.mirror import mirror_stub
    from zoo.index.publish import publish
    from zoo.index.view import open_index

    store = open_store(store_url)
    export = read_export(export_dir, stub)
    lineage = collect_lineage(export.meta.lineage, repo, export_dir)
    parent = lineage.parent
    if parent is not None:
        try:
            lineage = pin_parent(lineage, open_index(store))
        except StubNotFoundError:
            parent_dir = _exported_folder(parse_ref(parent)[0], export_dir.parent)
            if parent_dir is None:
                raise
            register_export(parent_dir, store_url, registry_dir, repo)
            lineage = pin_parent(lineage, open_index(store))
    export = replace(export, meta=replace(export.meta, lineage=lineage))
    result = publish(export, store, aliases=aliases)
    try:
        changed = mirror_stub(open_index(store), export.stub, registry_dir)
    except MirrorDivergedError as exc:
        # A clone publishing into its own store (not the team's, which registry/ mirrors):
        # the publish stands, the committed mirror stays the team's.
        return Registered(result, [], store, str(exc))
    return Registered(result, changed, store)


def write_receipt(path: Path, ref: str, store: str) -> None:
    """The stage's receipt (read back by zoo.pipeline.model_io.read_receipt): only what the
    publish settled, never how it went (created or found, generation, files touched). A
    transfer stage depends on this file, and a clone publishing the same pulled export into
    its own store must write the same bytes, or DVC would re-run the transfer for nothing."""
    from zoo.fsutil import atomic_write_json

    atomic_write_json(path, {"ref": ref, "store": store})


def _exported_folder(stub: Stub, exports: Path) -> Path | None:
    """The export folder beside this one whose zoo.json names `stub`, if any."""
    for meta in sorted(exports.glob(f"*/{META_FILE}")):
        try:
            named = json.loads(meta.read_text()).get("stub")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if named == str(stub):
            return meta.parent
    return None
