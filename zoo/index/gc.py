"""`zoo gc`: find (and with `--yes` delete) store objects that nothing published references.

Killed publishers leave blobs, entries and shards that no index generation names, and
local stores leave temporary upload files. They are garbage once older than a grace
period, the rule S3 lifecycle policies use: a publish in flight writes its objects before
it swaps the index, so everything it may still reference is young. A blob it reuses is
made young again first (`Store.ensure_blob` touches it, before the publish swaps the
index); the index is read again before anything is deleted (a collection that saw it move
starts over), each object's age is asked again right before it is deleted, and a publish
re-uploads any of its blobs found missing after its swap. What is left is a window of one
request between that last age check and the delete, the same one S3 lifecycle rules have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from zoo.errors import StoreError
from zoo.index.document import entry_key, shard_key
from zoo.index.view import IndexView, load_root, read_entry
from zoo.storage.base import BLOB_PREFIX, Store

#: Objects younger than this are never collected (a day, like S3 lifecycle rules).
DEFAULT_GRACE_S = 24 * 3600.0
PREFIXES = (BLOB_PREFIX, "entries/", "index/shards/")
MAX_ROUNDS = 5


@dataclass
class GcReport:
    generation: int
    referenced: int
    garbage: list[str] = field(default_factory=list)  # unreferenced, older than the grace
    young: list[str] = field(default_factory=list)  # unreferenced, kept for now
    temporaries: list[str] = field(default_factory=list)  # stale upload leftovers
    deleted: bool = False


def referenced_keys(view: IndexView) -> set[str]:
    """Every key the index generation of `view` names: shards, entries, blobs."""
    keys = {shard_key(sha) for sha in view.root.shards.values()}
    for record in view.records():
        for summary in record.versions:
            keys.add(entry_key(summary.entry_sha256))
            entry = read_entry(view.store, summary.entry_sha256)
            keys.update(f"{BLOB_PREFIX}{f.sha256[:2]}/{f.sha256}" for f in entry.files)
    return keys


def collect(
    store: Store, grace_s: float = DEFAULT_GRACE_S, delete: bool = False, now: float | None = None
) -> GcReport:
    """What is garbage in `store` (a dry run), or delete it too with `delete`."""
    if grace_s < 0:
        raise StoreError(f"the grace period must be >= 0 seconds, got {grace_s}")
    for _ in range(MAX_ROUNDS):
        root, etag = load_root(store)
        keep = referenced_keys(IndexView(store, root, etag))
        clock = time.time() if now is None else now
        report = GcReport(root.generation, len(keep))
        for prefix in PREFIXES:
            for key, modified in store.objects(prefix):
                if key not in keep:
                    old = clock - modified >= grace_s
                    (report.garbage if old else report.young).append(key)
        report.temporaries = [n for n, m in store.temporaries() if clock - m >= grace_s]
        if not delete:
            return report
        if load_root(store)[1] != etag:
            continue  # a publisher moved the index meanwhile: look again
        for key in list(report.garbage):
            # Asked again right before deleting: a publisher that reused the object since
            # the listing has made it young (it touches before it swaps the index).
            age = (time.time() if now is None else now) - (store.modified(key) or clock)
            if age < grace_s:
                report.garbage.remove(key)
                report.young.append(key)
                continue
            store.delete(key)
        for name in report.temporaries:
            store.delete_temporary(name)
        report.deleted = True
        return report
    raise StoreError(
        f"{store.url}: the index moved during each of {MAX_ROUNDS} collections; run `zoo gc` "
        "again when fewer publishers are active"
    )
