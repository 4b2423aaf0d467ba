"""Publishing exports and moving aliases, atomically and safely under concurrency.

Order of writes, so that nothing published ever points at something missing:
1. every file as a content-addressed blob (create-if-absent);
2. the entry, as an immutable object named by its hash;
3. a new shard holding the stub's updated record (immutable, named by its hash);
4. the index root, by compare-and-swap on its etag.

Only step 4 publishes anything; a publisher killed before it leaves unreferenced
objects, never a broken index. Losing the race in step 4 means another publisher moved
the index: re-read it and redo 2-4 (the version number is decided there, so two
publishers of one stub get consecutive versions, never the same one).
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from zoo.errors import (
    AdapterError,
    StoreConflictError,
    StoreError,
    StubNotFoundError,
    VersionNotFoundError,
)
from zoo.index.adapters import exact_parent, is_adapter
from zoo.index.document import StubRecord, entry_key, shard_key, shard_of
from zoo.index.export import ExportFolder, read_export
from zoo.index.schema import (
    AliasEvent,
    Entry,
    EntrySummary,
    Stub,
    check_alias,
    content_hash,
    format_version,
)
from zoo.index.view import LATEST, IndexView, load_root, open_index, read_entry
from zoo.storage.base import Store, open_store, sha256_bytes

MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class PublishResult:
    entry: Entry
    created: bool  # False: the same content was already published as this version
    generation: int
    uploaded: int  # blobs written by this call
    repaired: int = 0  # stored blobs whose bytes were damaged, replaced by this call


def now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _store(store: Store | str | os.PathLike[str] | None) -> Store:
    return store if isinstance(store, Store) else open_store(store)


T = TypeVar("T")


def transact(
    store: Store, stub: Stub, mutate: Callable[[StubRecord, IndexView], tuple[StubRecord, T] | None]
) -> tuple[T | None, int]:
    """Apply `mutate` to the stub's record and publish the result by compare-and-swap,
    retrying on lost races. `mutate` returns (new record, result) or None for "no change";
    it may be called several times and must write only immutable objects."""
    for attempt in range(MAX_ATTEMPTS):
        root, etag = load_root(store)
        view = IndexView(store, root, etag)
        shard_id = shard_of(stub)
        shard = view.shard(shard_id)
        record = shard.get(str(stub)) or StubRecord(stub)
        outcome = mutate(record, view)
        if outcome is None:
            return None, root.generation
        new_record, result = outcome
        data = shard.with_record(new_record).to_bytes()
        sha = sha256_bytes(data)
        store.put_if_absent(shard_key(sha), data)
        new_root = replace(
            root,
            generation=root.generation + 1,
            count=root.count + len(new_record.versions) - len(record.versions),
            updated_at=now(),
            shards={**root.shards, shard_id: sha},
        )
        try:
            store.swap_index(new_root.to_bytes(), etag)
        except StoreConflictError:
            # Jittered, growing pause so racing publishers stop colliding in lockstep.
            time.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** min(attempt, 7))))
            continue
        return result, new_root.generation
    raise StoreError(
        f"gave up updating the index at {store.url} after {MAX_ATTEMPTS} lost races; "
        "too many concurrent publishers, try again"
    )


def _event(record: StubRecord, alias: str, version: int | None, generation: int) -> AliasEvent:
    return AliasEvent(alias, version, record.aliases.get(alias), now(), generation)


def _move_aliases(
    record: StubRecord, aliases: Iterable[str], version: int, generation: int
) -> StubRecord:
    new_aliases = dict(record.aliases)
    history = list(record.history)
    for alias in aliases:
        if new_aliases.get(alias) != version:
            history.append(_event(record, alias, version, generation))
            new_aliases[alias] = version
    return replace(record, aliases=new_aliases, history=history)


def publish(
    export_dir: str | os.PathLike[str] | ExportFolder,
    store: Store | str | os.PathLike[str] | None = None,
    stub: Stub | str | None = None,
    aliases: Iterable[str] = (),
) -> PublishResult:
    """Publish an export folder as the stub's next version, or find it already published.

    Same content (same content hash) as an existing version => that version is returned
    with created=False and nothing new is written except requested alias moves.
    """
    export = export_dir if isinstance(export_dir, ExportFolder) else read_export(export_dir, stub)
    wanted = [check_alias(a) for a in aliases]
    target = _store(store)
    facts = export.meta
    chash = content_hash(
        export.files,
        facts.metrics,
        facts.benchmarks,
        facts.sparsity,
        facts.quantization,
        facts.lineage,
    )
    _check_adapter_base(export, open_index(target), target)
    # Every blob is uploaded, or its stored copy checked, even when this content is
    # already published: a copy damaged on the store is replaced from the good export.
    outcomes = [target.ensure_blob(r.sha256, export.path_of(r)) for r in export.files]
    uploaded, repaired = outcomes.count("uploaded"), outcomes.count("repaired")

    def mutate(
        record: StubRecord, view: IndexView
    ) -> tuple[StubRecord, tuple[EntrySummary, bool]] | None:
        generation = view.generation + 1
        for summary in record.versions:
            if summary.content_hash == chash:
                if all(record.aliases.get(a) == summary.version for a in wanted):
                    return None
                moved = _move_aliases(record, wanted, summary.version, generation)
                return moved, (summary, False)
        entry = Entry(
            stub=export.stub,
            version=record.next_version,
            files=export.files,
            content_hash=chash,
            metrics=facts.metrics,
            benchmarks=facts.benchmarks,
            recipe=export.recipe,
            card=export.card,
            sparsity=facts.sparsity,
            quantization=facts.quantization,
            lineage=facts.lineage,
            created_at=now(),
        )
        data = entry.to_json().encode()
        sha = sha256_bytes(data)
        target.put_if_absent(entry_key(sha), data)
        summary = EntrySummary.of(entry, sha)
        grown = replace(record, versions=[*record.versions, summary])
        return _move_aliases(grown, [LATEST, *wanted], entry.version, generation), (summary, True)

    result, generation = transact(target, export.stub, mutate)
    if result is None:  # nothing to change: this content is already published
        found = _find_content(open_index(target), export.stub, chash)
        assert found is not None
        result = (found, False)
    summary, created = result
    # A `zoo gc` that read the index just before our swap may have taken a blob we reused:
    # put back any that is gone, so the index we published is whole.
    for record in export.files:
        if not target.has_blob(record.sha256):
            target.put_blob(record.sha256, export.path_of(record))
    entry = read_entry(target, summary.entry_sha256)
    return PublishResult(entry, created, generation, uploaded, repaired)


def _check_adapter_base(export: ExportFolder, view: IndexView, store: Store) -> None:
    """An adapter entry is published only over a base version that exists here and that
    it fits: every tensor's name and shape, checked by composing it onto the loaded base."""
    if not is_adapter({f.path for f in export.files}):
        return
    parent = export.meta.lineage.parent
    stub, version = exact_parent(parent)
    try:
        base = view.entry(stub, version)
    except (StubNotFoundError, VersionNotFoundError) as exc:
        raise AdapterError(
            f"{export.root}: the adapter's base {parent} is not in this registry "
            f"({view.store.url}): publish the base first, or fix lineage.parent in zoo.json"
        ) from exc
    _check_adapter_fits(export, base, store)


def _check_adapter_fits(export: ExportFolder, base: Entry, store: Store) -> None:
    # The same load and compose a user's zoo.load does, so publishing refuses exactly what
    # loading would; the base is fetched into a throw-away cache, not the user's.
    import tempfile

    from zoo.client.load import load_folder
    from zoo.client.session import Session
    from zoo.compress.adapter import compose

    with tempfile.TemporaryDirectory(prefix="zoo-adapter-check-") as workdir:
        session = Session(store=store, cache_dir=workdir, offline=False, progress=False)
        model = load_folder(session.download(base).folder)
        try:
            compose(model, export.root)
        except AdapterError as exc:
            raise AdapterError(
                f"cannot publish {export.root} over its base {base.ref} (lineage.parent in "
                f"zoo.json): {exc}"
            ) from exc


def _find_content(view: IndexView, stub: Stub, chash: str) -> EntrySummary | None:
    record = view.record(stub)
    if record is None:
        return None
    return next((s for s in record.versions if s.content_hash == chash), None)


def set_alias(
    store: Store | str | os.PathLike[str] | None, stub: Stub, version: int, alias: str
) -> int:
    """Point `alias` at `version` of `stub`; returns the index generation."""
    name = check_alias(alias)
    target = _store(store)

    def mutate(record: StubRecord, view: IndexView) -> tuple[StubRecord, None] | None:
        if not record.versions:
            raise StubNotFoundError(str(stub), [str(s) for s in view.stubs()], target.url)
        if record.version(version) is None:
            available = [format_version(s.version) for s in record.versions]
            raise VersionNotFoundError(str(stub), format_version(version), available)
        if record.aliases.get(name) == version:
            return None
        return _move_aliases(record, [name], version, view.generation + 1), None

    return transact(target, stub, mutate)[1]


def remove_alias(store: Store | str | os.PathLike[str] | None, stub: Stub, alias: str) -> int:
    """Remove `alias` from `stub` (its history keeps the removal)."""
    name = check_alias(alias)
    target = _store(store)

    def mutate(record: StubRecord, view: IndexView) -> tuple[StubRecord, None] | None:
        if not record.versions:
            raise StubNotFoundError(str(stub), [str(s) for s in view.stubs()], target.url)
        if name not in record.aliases:
            available = sorted(record.aliases)
            raise VersionNotFoundError(str(stub), name, available)
        aliases = {k: v for k, v in record.aliases.items() if k != name}
        event = _event(record, name, None, view.generation + 1)
        return replace(record, aliases=aliases, history=[*record.history, event]), None

    return transact(target, stub, mutate)[1]
