"""The Store contract, run on a local folder and on a real SeaweedFS server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from zoo.errors import (
    BlobNotFoundError,
    ChecksumMismatchError,
    SchemaError,
    StoreConflictError,
)
from zoo.storage.base import INDEX_KEY, Store


def _file(tmp_path: Path, data: bytes, name: str = "f.bin") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_blobs_are_created_once_and_read_by_range(any_store: Store, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    path, sha = _file(tmp_path, data)
    assert not any_store.has_blob(sha)
    assert any_store.put_blob(sha, path) is True
    assert any_store.put_blob(sha, path) is False
    assert any_store.has_blob(sha) and any_store.blob_size(sha) == len(data)
    assert any_store.read_blob(sha) == data
    assert any_store.read_blob(sha, 100, 300) == data[100:300]
    assert any_store.read_blob(sha, 10_000) == data[10_000:]
    assert any_store.read_blob(sha, len(data)) == b""
    assert b"".join(any_store.iter_blob(sha, 5, chunk_size=1000)) == data[5:]
    out = any_store.get_blob(sha, tmp_path / "copy")
    assert out.read_bytes() == data


def test_a_blob_must_match_its_hash(any_store: Store, tmp_path: Path) -> None:
    path, _ = _file(tmp_path, b"content")
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ChecksumMismatchError):
        any_store.put_blob(wrong, path)
    assert not any_store.has_blob(wrong)
    with pytest.raises(BlobNotFoundError):
        any_store.read_blob(wrong)
    with pytest.raises(BlobNotFoundError):
        any_store.blob_size(wrong)


def test_immutable_documents_are_never_overwritten(any_store: Store) -> None:
    assert any_store.get("entries/x.json") is None
    assert any_store.put_if_absent("entries/x.json", b"first") is True
    assert any_store.put_if_absent("entries/x.json", b"second") is False
    doc = any_store.get("entries/x.json")
    assert doc is not None and doc.data == b"first"


def test_the_index_is_replaced_only_by_compare_and_swap(any_store: Store) -> None:
    assert any_store.read_index() is None
    etag1 = any_store.swap_index(b"gen1", None)
    with pytest.raises(StoreConflictError):
        any_store.swap_index(b"gen1-again", None)  # someone created it first
    etag2 = any_store.swap_index(b"gen2", etag1)
    with pytest.raises(StoreConflictError):
        any_store.swap_index(b"stale", etag1)  # lost the race: etag1 is gone
    current = any_store.read_index()
    assert current is not None and current.data == b"gen2" and current.etag == etag2


def test_list_and_key_safety(any_store: Store, tmp_path: Path) -> None:
    path, sha = _file(tmp_path, b"abc")
    any_store.put_blob(sha, path)
    any_store.put_if_absent("entries/aa/1.json", b"{}")
    any_store.swap_index(b"{}", None)
    assert sorted(any_store.list("")) == sorted(
        [f"blobs/sha256/{sha[:2]}/{sha}", "entries/aa/1.json", INDEX_KEY]
    )
    assert list(any_store.list("entries/")) == ["entries/aa/1.json"]
    for bad in ("../x", "a/../../x", "/abs", "a//b", ""):
        with pytest.raises(SchemaError, match="not a valid key"):
            any_store.get(bad)
