"""fetch_blob on its own: parallel ranges written in order, resume, refusal of bad bytes."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoo.client.cache import Cache
from zoo.client.transfer import fetch_blob
from zoo.storage.local import LocalStore

KIB = 1024


@pytest.fixture
def blob(tmp_path: Path) -> tuple[LocalStore, str, bytes]:
    data = os.urandom(1000 * KIB + 123)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    store = LocalStore(tmp_path / "store")
    sha = hashlib.sha256(data).hexdigest()
    store.put_blob(sha, source)
    return store, sha, data


class Mismatch(Exception):
    pass


def test_parallel_ranges_resume_from_a_partial_file(
    blob: tuple[LocalStore, str, bytes], tmp_path: Path
) -> None:
    store, sha, data = blob
    cache = Cache(tmp_path / "cache")
    kept = 300 * KIB + 7
    (cache.root / "blobs").mkdir(parents=True)
    (cache.root / "blobs" / f"{sha}.old.incomplete").write_bytes(data[:kept])
    asked: list[tuple[int, int | None]] = []

    def read(start: int, end: int | None) -> Iterator[bytes]:
        asked.append((start, end))
        return store.iter_blob(sha, start, end)

    path = fetch_blob(
        cache, sha, len(data), read, on_mismatch=Mismatch, part=64 * KIB, workers=4, parallel_from=0
    )
    assert path.read_bytes() == data
    assert len(asked) > 4  # really split into ranges
    ranges = sorted(asked)
    assert ranges[0][0] == kept and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # no overlap
    assert sum((e or len(data)) - s for s, e in asked) == len(data) - kept
    assert not list((cache.root / "blobs").glob("*.incomplete"))


def test_wrong_bytes_are_refused_and_removed(
    blob: tuple[LocalStore, str, bytes], tmp_path: Path
) -> None:
    store, sha, data = blob
    cache = Cache(tmp_path / "cache")

    def tampered(start: int, end: int | None) -> Iterator[bytes]:
        for block in store.iter_blob(sha, start, end):
            yield block[:-1] + bytes([block[-1] ^ 1])

    with pytest.raises(Mismatch):
        fetch_blob(
            cache, sha, len(data), tampered, on_mismatch=Mismatch, part=64 * KIB, parallel_from=0
        )
    assert not cache.blob(sha).exists()
    assert not list((cache.root / "blobs").iterdir())
    # The same blob from an honest reader then arrives whole.
    path = fetch_blob(
        cache, sha, len(data), lambda s, e: store.iter_blob(sha, s, e), on_mismatch=Mismatch
    )
    assert path.read_bytes() == data


def test_a_truncated_cached_blob_is_fetched_again(
    blob: tuple[LocalStore, str, bytes], tmp_path: Path
) -> None:
    store, sha, data = blob
    cache = Cache(tmp_path / "cache")
    read = lambda s, e: store.iter_blob(sha, s, e)  # noqa: E731
    path = fetch_blob(cache, sha, len(data), read, on_mismatch=Mismatch)
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:  # what a crash before writeback can leave
        handle.truncate(len(data) // 3)
    again = fetch_blob(cache, sha, len(data), read, on_mismatch=Mismatch)
    assert again == path and path.read_bytes() == data
