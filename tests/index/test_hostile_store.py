"""Publishing against damaged stores and damaged exports; repair; garbage collection.

On a local store and on SeaweedFS where the store matters.
"""

from __future__ import annotations

import json
import os
import struct
import time
import uuid
from pathlib import Path

import pytest

from tests.hostile import seaweed_fixture
from zoo.errors import SchemaError, StoreError, ZooError
from zoo.index.publish import publish
from zoo.index.verify import verify_index
from zoo.index.view import open_index
from zoo.storage.base import Store, blob_key
from zoo.storage.local import LocalStore
from zoo.storage.s3 import S3Store
from zoo.storage.seaweed import SeaweedServer

BUCKET = "zoo-index-hostile"


seaweed = seaweed_fixture(BUCKET)


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: SeaweedServer = request.getfixturevalue("seaweed")
    return S3Store(BUCKET, f"t-{uuid.uuid4().hex[:10]}", **server.client_kwargs())


def _damage(store: Store, sha256: str) -> None:
    """Flip one byte of a stored blob behind the index's back (same size)."""
    data = bytearray(store.read_blob(sha256))
    data[len(data) // 2] ^= 0x01
    if isinstance(store, LocalStore):
        path = store.root.joinpath(*blob_key(sha256).split("/"))
        path.chmod(0o644)
        path.write_bytes(bytes(data))
    else:
        assert isinstance(store, S3Store)
        store.client.put_object(
            Bucket=store.bucket, Key=store._key(blob_key(sha256)), Body=bytes(data)
        )


# -- a corrupt blob on the store can be repaired ------------------------------------------


def test_publishing_again_repairs_a_damaged_blob(any_store: Store, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    first = publish(export, any_store)
    weights = first.entry.file("model.safetensors")
    _damage(any_store, weights.sha256)
    assert not verify_index(open_index(any_store)).ok
    again = publish(export, any_store)
    assert not again.created and again.repaired == 1
    assert verify_index(open_index(any_store)).ok


def test_index_verify_repair_heals_from_an_export(
    any_store: Store,
    tiny,  # type: ignore[no-untyped-def]
) -> None:
    export = tiny("a")
    entry = publish(export, any_store).entry
    weights = entry.file("model.safetensors")
    _damage(any_store, weights.sha256)
    from zoo.index.verify import good_copies

    report = verify_index(open_index(any_store), repair=good_copies([export]))
    assert report.ok and report.repaired == [weights.sha256]
    assert verify_index(open_index(any_store)).ok


def test_index_verify_repair_on_the_command_line(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    from zoo.cli import main

    store = LocalStore(tmp_path / "store")
    export = tiny("a")
    weights = publish(export, store).entry.file("model.safetensors")
    _damage(store, weights.sha256)
    assert main(["index", "verify", "--store", str(store.root)]) != 0
    code = main(["index", "verify", "--store", str(store.root), "--repair", str(export)])
    assert code == 0
    assert main(["index", "verify", "--store", str(store.root)]) == 0


# -- publish accepts only what every client can use ---------------------------------------


def _write_safetensors(path: Path, header: object, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


F32_4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
BAD_HEADERS = {
    "list header": ([F32_4], 16),
    # 2**62 * 8 elements wrap to 0 in int64: a reader that multiplies in int64 sees 0 bytes
    "overflowing shape": ({"w": {"dtype": "F32", "shape": [2**62, 8], "data_offsets": [0, 0]}}, 0),
    "negative offset": ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}}, 16),
    "overlapping spans": (
        {"w": F32_4, "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
        16,
    ),
    "span past the end": ({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, 16),
    "unknown dtype": ({"w": {"dtype": "F99", "shape": [4], "data_offsets": [0, 16]}}, 16),
    "bool in shape": ({"w": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}}, 16),
    "metadata not strings": ({"__metadata__": {"a": 1}, "w": F32_4}, 16),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_publish_refuses_a_malformed_safetensors_header(
    case: str,
    tmp_path: Path,
    tiny,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zoo.cli import main

    export = tiny("a")
    header, size = BAD_HEADERS[case]
    _write_safetensors(export / "model.safetensors", header, bytes(size))
    code = main(["publish", str(export), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 2 and "model.safetensors" in err and "Traceback" not in err
    assert not (tmp_path / "store" / "index.json").exists()


@pytest.mark.parametrize("name", ["back\\slash.bin", "sub/.hidden", "space name.txt"])
def test_publish_refuses_file_names_no_client_accepts(
    name: str,
    tmp_path: Path,
    tiny,  # type: ignore[no-untyped-def]
) -> None:
    export = tiny("a")
    target = export.joinpath(*name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("x")
    meta = json.loads((export / "zoo.json").read_text())
    meta["files"] = ["model.safetensors", "config.json", name]
    (export / "zoo.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="is refused"):
        publish(export, tmp_path / "store")


# -- zoo gc ---------------------------------------------------------------------------------


def test_gc_collects_what_killed_publishers_left_and_nothing_else(
    any_store: Store,
    tiny,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from zoo.index.gc import collect

    kept = publish(tiny("kept"), any_store).entry
    # A publisher killed after uploading its blobs (before the index swap):
    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(os.urandom(1000))
    from zoo.fsutil import sha256_file

    orphan_sha = sha256_file(orphan)
    any_store.put_blob(orphan_sha, orphan)
    if isinstance(any_store, LocalStore):  # and, on a local store, a temporary copy
        leftover = any_store.root / "blobs" / "sha256" / "ab" / ".abababababababab.x1.tmp"
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"half")
    # Within the grace period nothing goes: a publish in flight looks just like this.
    young = collect(any_store, grace_s=3600, delete=True)
    assert blob_key(orphan_sha) in young.young and not young.garbage
    assert any_store.has_blob(orphan_sha)
    dry = collect(any_store, grace_s=0, now=time.time() + 1)
    assert dry.garbage == [blob_key(orphan_sha)] and not dry.deleted
    assert any_store.has_blob(orphan_sha)
    done = collect(any_store, grace_s=0, delete=True, now=time.time() + 1)
    assert done.deleted and not any_store.has_blob(orphan_sha)
    if isinstance(any_store, LocalStore):
        assert done.temporaries and not leftover.exists()
    # Everything published is still there and whole.
    assert verify_index(open_index(any_store)).ok
    assert all(any_store.has_blob(f.sha256) for f in kept.files)


def test_gc_cli_is_a_dry_run_unless_told(
    tmp_path: Path,
    tiny,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zoo.cli import main

    store = LocalStore(tmp_path / "store")
    publish(tiny("a"), store)
    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(b"orphan bytes")
    from zoo.fsutil import sha256_file

    sha = sha256_file(orphan)
    store.put_blob(sha, orphan)
    assert main(["gc", "--store", str(store.root), "--grace", "0"]) == 0
    assert "would delete" in capsys.readouterr().out and store.has_blob(sha)
    assert main(["gc", "--store", str(store.root), "--grace", "0", "--yes"]) == 0
    assert not store.has_blob(sha)
    assert main(["index", "verify", "--store", str(store.root)]) == 0


def test_a_reused_blob_is_made_young_again(any_store: Store, tiny) -> None:  # type: ignore[no-untyped-def]
    export = tiny("a")
    key = blob_key(publish(export, any_store).entry.file("model.safetensors").sha256)

    def modified() -> float:
        return dict(any_store.objects("blobs/"))[key]

    if isinstance(any_store, LocalStore):  # an old blob, e.g. a killed publisher's
        os.utime(any_store.root.joinpath(*key.split("/")), (0, 0))
    before = modified()
    time.sleep(1.1)  # S3 times have one-second resolution
    publish(export, any_store)  # reuses it
    assert modified() > before and time.time() - modified() < 60


def test_errors_are_project_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.swap_index(b'{"format": "zoo-index/1", "generation": 1, "shards": [1, 2]}', None)
    with pytest.raises(ZooError, match="shards must be an object"):
        open_index(store)


def test_gc_running_beside_publishers_never_breaks_the_index(tmp_path: Path, tiny) -> None:  # type: ignore[no-untyped-def]
    """The race the grace period alone would lose: a publisher reuses blobs that a killed
    publisher left long ago, while gc collects them."""
    import threading

    from zoo.fsutil import sha256_file
    from zoo.index.gc import collect

    store = LocalStore(tmp_path / "store")
    exports = [
        tiny(f"e{i}", seed=i, stub=f"zoo:cv/classification/tiny/synthetic/m{i}") for i in range(6)
    ]
    for export in exports:  # blobs uploaded, never published, and old
        for path in export.rglob("*"):
            if path.is_file():
                sha = sha256_file(path)
                store.put_blob(sha, path)
                os.utime(store.root.joinpath(*blob_key(sha).split("/")), (0, 0))
    done = threading.Event()
    errors: list[BaseException] = []

    def collector() -> None:
        while not done.is_set():
            try:
                collect(store, grace_s=3600, delete=True)
            except StoreError as exc:
                # Backing off when the index keeps moving is safe (it deletes nothing); a
                # busy store may make it do so. Anything else is a failure.
                if "the index moved" not in str(exc):
                    errors.append(exc)
                    return
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)
                return

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        for export in exports:
            publish(export, store)
    finally:
        done.set()
        thread.join()
    assert not errors
    collect(store, grace_s=3600, delete=True)  # and once more, with no publisher running
    report = verify_index(open_index(store))
    assert report.ok and report.entries == len(exports), report.problems
