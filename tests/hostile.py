"""What a hostile (or damaged) store does to a real published index, for the tests.

Each helper starts from what `zoo publish` really wrote and rewrites it the way someone
with write access to the store could: a new entry object with crafted values, a shard and
a root that name it. The values never pass through the zoo's own dataclasses, so they can
be anything the JSON holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.storage._seaweed import seaweedfs
from zoo.index.document import SHARD_FORMAT, entry_key, shard_key, shard_of
from zoo.index.schema import Stub, parse_ref
from zoo.storage.base import INDEX_KEY, Store
from zoo.storage.seaweed import SeaweedServer

JSON = dict[str, Any]


def _dumps(obj: Any) -> bytes:
    # The json module writes what orjson refuses (integers past 64 bits, NaN): a hostile
    # store can write those bytes too.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_root(store: Store) -> tuple[JSON, str]:
    doc = store.read_index()
    assert doc is not None, "publish something first"
    return orjson.loads(doc.data), doc.etag


def read_shard(store: Store, sha: str) -> dict[str, bytes]:
    data = store.get(shard_key(sha))
    assert data is not None
    pairs = (line.split(b"\t", 1) for line in data.data.splitlines()[1:])
    return {key.decode(): body for key, body in pairs}


def write_shard(store: Store, records: dict[str, bytes]) -> str:
    lines = [_dumps({"format": SHARD_FORMAT})]
    lines += [key.encode() + b"\t" + body for key, body in sorted(records.items())]
    data = b"\n".join(lines) + b"\n"
    sha = _sha(data)
    store.put_if_absent(shard_key(sha), data)
    return sha


def swap_root(store: Store, edit: Callable[[JSON], Any]) -> None:
    """Replace the published root with `edit(root)` (or the root edited in place)."""
    root, etag = read_root(store)
    new = edit(root)
    store.swap_index(_dumps(root if new is None else new), etag)


def rewrite_entry(store: Store, ref: str, edit: Callable[[JSON], None]) -> JSON:
    """Republish the entry of `ref` (a stub@vN) with `edit` applied to its JSON; the summary
    in the shard follows (entry_sha256, size). Returns the edited entry."""
    stub, version = parse_ref(ref)
    root, _ = read_root(store)
    shard_id = shard_of(stub)
    records = read_shard(store, root["shards"][shard_id])
    record = orjson.loads(records[str(stub)])
    summary = next(s for s in record["versions"] if f"v{s['version']}" == version)
    old = store.get(entry_key(summary["entry_sha256"]))
    assert old is not None
    entry = orjson.loads(old.data)
    edit(entry)
    data = _dumps(entry)
    sha = _sha(data)
    store.put_if_absent(f"entries/{sha[:2]}/{sha}.json", data)
    summary["entry_sha256"] = sha
    records[str(stub)] = _dumps(record)
    new_shard = write_shard(store, records)
    swap_root(store, lambda r: r["shards"].__setitem__(shard_id, new_shard))
    return entry


def edit_record(store: Store, stub: Stub | str, edit: Callable[[JSON], Any]) -> None:
    """Replace the stub's index record (versions, aliases, history) with `edit(record)`."""
    parsed = stub if isinstance(stub, Stub) else Stub.parse(stub)
    root, _ = read_root(store)
    shard_id = shard_of(parsed)
    records = read_shard(store, root["shards"][shard_id])
    record = orjson.loads(records[str(parsed)])
    new = edit(record)
    records[str(parsed)] = _dumps(record if new is None else new)
    new_shard = write_shard(store, records)
    swap_root(store, lambda r: r["shards"].__setitem__(shard_id, new_shard))


def file_of(entry: JSON, path: str) -> JSON:
    record: JSON = next(f for f in entry["files"] if f["path"] == path)
    return record


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port whose server accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def seaweed_fixture(bucket: str) -> Callable[..., Iterator[SeaweedServer]]:
    """A module-scoped fixture: a SeaweedFS server on loopback holding `bucket`."""

    @pytest.fixture(scope="module")
    def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
        with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
            server.make_bucket(bucket)
            yield server

    return seaweed


__all__ = [
    "INDEX_KEY",
    "edit_record",
    "file_of",
    "read_root",
    "rewrite_entry",
    "seaweed_fixture",
    "silent_port",
    "swap_root",
]
