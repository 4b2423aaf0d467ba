"""Publisher processes for the concurrency and fault tests.

Children are forked from the test process, so they start in milliseconds without
re-importing torch; each builds its own store (and boto3 client) after the fork.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.index.view import IndexView, read_entry
from zoo.storage.base import Store
from zoo.storage.local import LocalStore
from zoo.storage.s3 import S3Store

StoreSpec = tuple[str, dict[str, Any]]  # ("local", {"root": ...}) or ("s3", S3Store kwargs)

FORK = multiprocessing.get_context("fork")


def spec_of(store: Store) -> StoreSpec:
    if isinstance(store, LocalStore):
        return ("local", {"root": str(store.root)})
    assert isinstance(store, S3Store)
    return (
        "s3",
        {
            "bucket": store.bucket,
            "prefix": store.prefix,
            "endpoint_url": store.endpoint_url,
            **store._client_kwargs,
        },
    )


def build(spec: StoreSpec) -> Store:
    kind, kwargs = spec
    return LocalStore(**kwargs) if kind == "local" else S3Store(**kwargs)


def publish_all(spec: StoreSpec, folders: Sequence[Path], start: Any = None) -> None:
    from zoo.index.publish import publish

    store = build(spec)
    if start is not None:
        start.wait(30)  # all publishers begin together, to maximise contention
    for folder in folders:
        publish(folder, store)


def check_consistency(view: IndexView) -> int:
    """Every summary's entry exists and matches; every file's blob is there. Returns count."""
    count = 0
    for record in view.records():
        assert [s.version for s in record.versions] == list(range(1, len(record.versions) + 1))
        assert all(v in {s.version for s in record.versions} for v in record.aliases.values())
        for summary in record.versions:
            entry = read_entry(view.store, summary.entry_sha256)
            assert (entry.stub, entry.version) == (summary.stub, summary.version)
            for file in entry.files:
                assert view.store.blob_size(file.sha256) == file.size, (entry.ref, file.path)
            count += 1
    assert view.root.count == count
    return count
