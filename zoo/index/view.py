"""Reading the published index: one consistent generation, shards fetched as needed."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator

from zoo.errors import (
    ChecksumMismatchError,
    SchemaError,
    StubNotFoundError,
    VersionNotFoundError,
)
from zoo.index.document import Root, Shard, StubRecord, entry_key, shard_key, shard_of
from zoo.index.schema import (
    FACETS,
    PREFIX,
    AliasEvent,
    Entry,
    EntrySummary,
    Stub,
    format_version,
    parse_version,
)
from zoo.storage.base import INDEX_KEY, Store, Versioned, open_store, sha256_bytes

LATEST = "latest"


class IndexView:
    """A snapshot of the index at one generation. Shards are immutable, so once the root
    is read every later shard read belongs to the same generation."""

    def __init__(self, store: Store, root: Root, etag: str | None) -> None:
        self.store = store
        self.root = root
        self.etag = etag
        self._shards: dict[str, Shard] = {}

    @property
    def generation(self) -> int:
        return self.root.generation

    def shard(self, shard_id: str) -> Shard:
        if shard_id not in self._shards:
            sha = self.root.shards.get(shard_id)
            self._shards[shard_id] = Shard() if sha is None else self._read_shard(sha)
        return self._shards[shard_id]

    def _read_shard(self, sha: str) -> Shard:
        key = shard_key(sha)
        doc = self.store.get(key)
        if doc is None:
            raise SchemaError(
                f"{self.store.url}/{key}",
                f"index generation {self.generation} names a shard that is missing; the "
                "store is damaged (run `zoo index verify`)",
            )
        actual = sha256_bytes(doc.data)
        if actual != sha:
            raise ChecksumMismatchError(f"{self.store.url}/{key}", sha, actual, "index shard")
        return Shard.from_bytes(doc.data, f"{self.store.url}/{key}")

    def record(self, stub: Stub) -> StubRecord | None:
        return self.shard(shard_of(stub)).get(str(stub))

    def keys(self) -> Iterator[tuple[Shard, str]]:
        for shard_id in sorted(self.root.shards):
            shard = self.shard(shard_id)
            yield from ((shard, key) for key in shard.names())

    def records(self) -> Iterator[StubRecord]:
        for shard, key in self.keys():
            record = shard.get(key)
            if record is not None:
                yield record

    def stubs(self) -> list[Stub]:
        return sorted(Stub.parse(key) for _, key in self.keys())

    def summaries(self) -> Iterator[EntrySummary]:
        for record in self.records():
            yield from record.versions

    def _require(self, stub: Stub) -> StubRecord:
        record = self.record(stub)
        if record is None or not record.versions:
            known = [str(s) for s in self.stubs()]
            raise StubNotFoundError(str(stub), known, self.store.url)
        return record

    def versions(self, stub: Stub) -> list[EntrySummary]:
        return list(self._require(stub).versions)

    def aliases(self, stub: Stub) -> dict[str, int]:
        return dict(self._require(stub).aliases)

    def alias_history(self, stub: Stub) -> list[AliasEvent]:
        return list(self._require(stub).history)

    def resolve(self, stub: Stub, ref: str | None = None) -> EntrySummary:
        """The summary for `v3`, an alias, or (ref None) the `latest` alias."""
        record = self._require(stub)
        name = ref or LATEST
        number = parse_version(name)
        if number is None:
            number = record.aliases.get(name)
            if number is None and name == LATEST:
                number = record.versions[-1].version
        summary = record.version(number) if number is not None else None
        if summary is None:
            available = [format_version(s.version) for s in record.versions] + sorted(
                record.aliases
            )
            raise VersionNotFoundError(str(stub), name, available)
        return summary

    def entry(self, stub: Stub, version: int) -> Entry:
        summary = self.resolve(stub, format_version(version))
        entry = read_entry(self.store, summary.entry_sha256)
        if entry.stub != stub or entry.version != summary.version:
            raise SchemaError(
                f"{self.store.url}/{entry_key(summary.entry_sha256)}",
                f"the index lists it as {summary.ref} but it holds {entry.ref}; the store "
                "is damaged (run `zoo index verify`)",
            )
        return entry

    def query(self, latest_only: bool = True, **facets: str) -> list[EntrySummary]:
        """Summaries whose facets match (shell wildcards allowed), sorted by stub and
        version; only each stub's `latest` unless `latest_only` is False."""
        unknown = set(facets) - set(FACETS)
        if unknown:
            raise SchemaError("query", f"unknown facet(s) {sorted(unknown)}; facets: {FACETS}")
        wanted = [(FACETS.index(k), v) for k, v in facets.items() if v not in (None, "", "*")]
        out: list[EntrySummary] = []
        for shard, key in self.keys():
            # Match on the key's text first: only matching stubs are parsed.
            parts = key.removeprefix(PREFIX).split("/")
            if len(parts) != len(FACETS):
                shard.get(key)  # a malformed key: raises the SchemaError that names it
            if any(not fnmatch.fnmatchcase(parts[i], v) for i, v in wanted):
                continue
            record = shard.get(key)
            if record is None or not record.versions:
                continue
            stub = record.stub
            if latest_only:
                out.append(self.resolve(stub))
            else:
                out.extend(record.versions)
        return sorted(out, key=lambda s: (s.stub, s.version))


def read_entry(store: Store, sha256: str) -> Entry:
    key = entry_key(sha256)
    doc = store.get(key)
    if doc is None:
        raise SchemaError(f"{store.url}/{key}", "entry named by the index is missing")
    actual = sha256_bytes(doc.data)
    if actual != sha256:
        raise ChecksumMismatchError(f"{store.url}/{key}", sha256, actual, "index entry")
    return Entry.from_json(doc.data)


def load_root(store: Store) -> tuple[Root, str | None]:
    doc: Versioned | None = store.read_index()
    if doc is None:
        return Root(), None
    return Root.from_bytes(doc.data, f"{store.url}/{INDEX_KEY}"), doc.etag


def open_index(store: Store | str | os.PathLike[str] | None = None) -> IndexView:
    """Read the published index of `store` (a Store, a URL, or None for the default)."""
    # Reading never creates a local folder: a missing store is an error, not an empty index.
    resolved = store if isinstance(store, Store) else open_store(store, create=False)
    root, etag = load_root(resolved)
    return IndexView(resolved, root, etag)
