"""Resolve a stub to an entry and bring its files into the cache.

A `Session` binds one registry URL, one cache and the offline switch. The store and the
index are opened lazily, on the first call that needs them: resolving a pinned version
that is already cached (`stub@v3`) never opens either, so it works with no network and
costs no request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from zoo.client.cache import Cache
from zoo.client.settings import canonical_url, is_offline, registry_url
from zoo.client.transfer import blob_is_intact, fetch_blob
from zoo.errors import (
    DownloadIntegrityError,
    OfflineError,
    SchemaError,
    StoreUnreachableError,
)
from zoo.fsutil import atomic_write_text, temp_beside
from zoo.index.adapters import exact_parent, is_adapter
from zoo.index.schema import (
    Entry,
    FileRecord,
    Stub,
    format_version,
    parse_ref,
    parse_version,
)
from zoo.storage.base import store_identity

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from zoo.index.view import IndexView
    from zoo.storage.base import Store

LATEST = "latest"
PARALLEL_FILES = 4


def stub_dir(stub: Stub) -> str:
    """`cv/classification/mlp/mnist/pruned50` -> `cv--classification--mlp--mnist--pruned50`
    (the Hub's `models--org--name` idea: one flat, readable folder per model)."""
    return stub.path.replace("/", "--")


@dataclass(frozen=True)
class Snapshot:
    """A model version in the cache: its entry and the folder holding its files."""

    entry: Entry
    folder: Path
    registry: str

    @property
    def ref(self) -> str:
        return self.entry.ref


class Session:
    def __init__(
        self,
        registry: str | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        progress: bool | None = None,
        store: Store | None = None,
    ) -> None:
        self.url = canonical_url(store.url if store is not None else registry_url(registry))
        # Cache folders are named by everything that names the registry (for S3 and the
        # Hub the endpoint too), so two servers that both hold s3://zoo/models never share
        # one: asking server B must not return server A's weights.
        self.cache_id = store.identity if store is not None else store_identity(self.url)
        self.cache = Cache.at(cache_dir)
        self.offline = is_offline(offline)
        self.progress = progress
        self._store: Store | None = store
        self._index: IndexView | None = None

    # -- the registry, opened on first use -----------------------------------------------
    @property
    def store(self) -> Store:
        if self.offline:
            raise OfflineError(
                f"the index of {self.url}",
                str(self.cache.root),
                "offline mode is on (ZOO_OFFLINE)",
                hint="Searching and resolving new models need the registry: unset ZOO_OFFLINE.",
            )
        if self._store is None:
            from zoo.storage.base import open_store

            self._store = open_store(self.url, create=False)
        return self._store

    @property
    def index(self) -> IndexView:
        if self._index is None:
            from zoo.index.view import open_index

            self._index = open_index(self.store)
        return self._index

    # -- resolution ------------------------------------------------------------------------
    def _cached_entry(self, stub: Stub, version: int) -> Entry | None:
        path = self.cache.entry_file(self.cache_id, stub_dir(stub), format_version(version))
        try:
            return Entry.from_json(path.read_bytes())
        except FileNotFoundError:
            return None

    def _from_refs(self, stub: Stub, alias: str) -> Entry | None:
        version = self.cache.read_ref(self.cache_id, stub_dir(stub), alias)
        number = parse_version(version) if version else None
        return self._cached_entry(stub, number) if number else None

    def resolve(self, ref: str | Stub) -> Entry:
        """The entry of `stub@vN`, `stub@alias` or `stub` (the `latest` alias)."""
        stub, name = (ref, None) if isinstance(ref, Stub) else parse_ref(ref)
        number = parse_version(name) if name else None
        wanted = stub.at(name or LATEST)
        if number is not None:
            cached = self._cached_entry(stub, number)
            if cached is not None:
                return cached  # versions are immutable: the cache is the truth
        alias = name or LATEST
        if self.offline:
            cached = None if number is not None else self._from_refs(stub, alias)
            if cached is None:
                raise OfflineError(wanted, str(self.cache.root), "offline mode is on (ZOO_OFFLINE)")
            return cached
        try:
            summary = self.index.resolve(stub, name)
            entry = self.index.entry(stub, summary.version)
        except StoreUnreachableError as exc:
            # Like the Hub client: a registry that does not answer (down, unmounted) falls
            # back to what the cache last saw for this alias, and says so. A damaged index
            # or refused credentials are not "unreachable": they fail as what they are.
            cached = None if number is not None else self._from_refs(stub, alias)
            if cached is None:
                raise OfflineError(wanted, str(self.cache.root), str(exc)) from exc
            log.warning(
                "registry unreachable (%s); using cached %s for %s", exc, cached.ref, wanted
            )
            return cached
        if number is None:
            self.cache.write_ref(
                self.cache_id, stub_dir(stub), alias, format_version(entry.version)
            )
        return entry

    # -- download ------------------------------------------------------------------------
    def snapshot_folder(self, entry: Entry) -> Path:
        return self.cache.snapshot(
            self.cache_id, stub_dir(entry.stub), format_version(entry.version)
        )

    def is_cached(self, entry: Entry) -> bool:
        folder = self.snapshot_folder(entry)
        marker = self.cache.entry_file(
            self.cache_id, stub_dir(entry.stub), format_version(entry.version)
        )
        return marker.is_file() and all(
            (folder / f.path).is_file() and blob_is_intact(self.cache.blob(f.sha256), f.size)
            for f in entry.files
        )

    def download(
        self, ref: str | Stub | Entry, local_dir: str | os.PathLike[str] | None = None
    ) -> Snapshot:
        """Bring every file of `ref` into the cache (only what is missing) and return its
        snapshot; with `local_dir`, also copy the files there (plain files, no links)."""
        entry = ref if isinstance(ref, Entry) else self.resolve(ref)
        folder = self.snapshot_folder(entry)
        if not self.is_cached(entry):
            self._fetch(entry, folder)
        base = self.adapter_base(entry)
        if base is not None:  # an adapter is useless without its base: cached once for all
            self.download(base)
        if local_dir is not None:
            return Snapshot(entry, _copy_out(entry, folder, Path(local_dir)), self.url)
        return Snapshot(entry, folder, self.url)

    def adapter_base(self, entry: Entry) -> Entry | None:
        """The exact base entry an adapter entry was trained on; None for a model."""
        if not is_adapter({f.path for f in entry.files}):
            return None
        exact_parent(entry.lineage.parent)
        assert entry.lineage.parent is not None
        return self.resolve(entry.lineage.parent)

    def _fetch(self, entry: Entry, folder: Path) -> None:
        missing = [f for f in entry.files if not blob_is_intact(self.cache.blob(f.sha256), f.size)]
        store = self.store  # opened once, here, not by several threads at once

        def fetch(record: FileRecord, update: Callable[[int], None]) -> None:
            fetch_blob(
                self.cache,
                record.sha256,
                record.size,
                lambda start, end: store.iter_blob(record.sha256, start, end),
                on_mismatch=lambda actual: DownloadIntegrityError(
                    entry.ref, record.path, record.sha256, actual, self.url
                ),
                progress=update,
            )

        # Files travel in parallel: the small ones (config, card, samples) ride along
        # with the weights instead of each paying a round trip after them.
        workers = min(PARALLEL_FILES, len(missing) or 1)
        with (
            _progress_bar(sum(f.size for f in missing), entry.ref, self.progress) as update,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            futures = [pool.submit(fetch, record, update) for record in missing]
            for future in futures:
                future.result()
        for record in entry.files:
            self.cache.link(folder.joinpath(*PurePosixPath(record.path).parts), record.sha256)
        # Written last: its presence says the snapshot is complete.
        marker = self.cache.entry_file(
            self.cache_id, stub_dir(entry.stub), format_version(entry.version)
        )
        atomic_write_text(marker, entry.to_json())

    def read_file(self, entry: Entry, path: str) -> bytes:
        """One file of `entry` (e.g. its recipe), through the cache: fetched and verified
        once, read from the cache afterwards (and offline)."""
        record = entry.file(path)
        blob = fetch_blob(
            self.cache,
            record.sha256,
            record.size,
            lambda start, end: self.store.iter_blob(record.sha256, start, end),
            on_mismatch=lambda actual: DownloadIntegrityError(
                entry.ref, path, record.sha256, actual, self.url
            ),
        )
        return blob.read_bytes()


def _copy_out(entry: Entry, snapshot: Path, dest: Path) -> Path:
    """Write the snapshot's files into `dest`, like the Hub's `local_dir`: each file is
    replaced atomically and nothing else in `dest` is touched, let alone deleted."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    for record in entry.files:
        target = dest.joinpath(*PurePosixPath(record.path).parts)
        # A symlinked folder inside DIR must not carry a write (or a mkdir) outside it.
        if not target.parent.resolve().is_relative_to(root):
            raise SchemaError(
                entry.ref, f"{target.parent} leads outside {dest}; refusing to write there"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with temp_beside(target) as tmp:
            shutil.copyfile(snapshot.joinpath(*PurePosixPath(record.path).parts), tmp)
            os.replace(tmp, target)
    return dest


@contextlib.contextmanager
def _progress_bar(total: int, label: str, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr for long transfers; by default shown only on a terminal."""
    if not total:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label.rsplit("/", 1)[-1],
        disable=None if enabled is None else not enabled,  # None: only when stderr is a tty
        leave=False,
    )
    lock = threading.Lock()  # files download on several threads

    def update(n: int) -> None:
        with lock:
            bar.update(n)

    try:
        yield update
    finally:
        bar.close()


__all__ = ["Session", "Snapshot", "stub_dir"]
