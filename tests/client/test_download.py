"""The cache: layout, integrity, resume after SIGKILL, concurrent downloads, offline use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.client.conftest import SMALL, CliResult
from tests.demo_models import DemoModel
from zoo.client import api
from zoo.client.cache import Cache
from zoo.client.session import Session
from zoo.errors import DownloadIntegrityError, OfflineError
from zoo.fsutil import sha256_file
from zoo.storage.base import CHUNK, blob_key
from zoo.storage.local import LocalStore

STUB = SMALL.stub
BIG = DemoModel("zoo:cv/classification/mlp/fashion_mnist/wide", arch_kwargs={"hidden": [2048]})


class CountingStore(LocalStore):
    """The real local store, recording every byte range requested from it."""

    def __init__(self, root: str) -> None:
        super().__init__(root, create=False)
        self.requests: list[tuple[str, int, int]] = []  # sha, start, bytes requested

    def iter_blob(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        stop = self.blob_size(sha256) if end is None else end
        self.requests.append((sha256, start, stop - start))
        return super().iter_blob(sha256, start, end, chunk_size)


def test_layout_blobs_snapshots_refs(small_store: Callable[..., str], tmp_path: Path) -> None:
    store = small_store()
    folder = api.download(STUB, registry=store)
    cache = Cache(tmp_path / "cache")
    entry = api.info(STUB + "@v1", registry=store)
    assert folder.name == "v1" and folder.parent.name == "snapshots"
    for record in entry.files:
        link = folder / record.path
        assert link.is_symlink()
        assert Path(os.path.realpath(link)) == cache.blob(record.sha256).resolve()
        assert sha256_file(link) == record.sha256
    assert (folder.parent.parent / "refs" / "latest").read_text() == "v1"
    assert (folder.parent.parent / "entries" / "v1.json").is_file()
    assert not list((tmp_path / "cache" / "blobs").glob("*.incomplete"))
    copied = api.download(STUB, tmp_path / "copy", registry=store)
    assert sorted(p.name for p in copied.iterdir() if p.is_file()) == sorted(
        f.path for f in entry.files if "/" not in f.path
    )
    assert not any(p.is_symlink() for p in copied.rglob("*"))


def test_pinned_cached_version_makes_no_store_request(
    small_store: Callable[..., str], tmp_path: Path
) -> None:
    store = small_store()
    api.download(STUB + "@v1", registry=store)
    counting = CountingStore(store)
    session = Session(store=counting)
    entry = session.resolve(STUB + "@v1")
    snap = session.download(entry)
    assert snap.folder.is_dir()
    assert counting.requests == [] and session._index is None  # the index was never read
    # Even with the store gone entirely, the pinned model loads.
    os.rename(store, str(tmp_path / "gone"))
    model = api.load(STUB + "@v1", registry=store)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_offline_resolves_aliases_through_refs_and_explains_misses(
    small_store: Callable[..., str], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliResult]
) -> None:
    other = DemoModel("zoo:cv/classification/mlp/fashion_mnist/other", arch_kwargs={"hidden": [8]})
    store = small_store(SMALL, other)
    api.download(STUB, registry=store)  # caches refs/latest -> v1
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert api.load(STUB, registry=store) is not None
    assert api.info(STUB + "@latest", registry=store).version == 1
    with pytest.raises(OfflineError, match=r"offline.*zoo download"):
        api.load(other.stub, registry=store)
    code, _, err = cli("download", other.stub, "--registry", store)
    assert code == 3 and "offline" in err and "zoo download" in err


def test_unreachable_registry_falls_back_to_cache_then_fails_clearly(
    small_store: Callable[..., str], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    store = small_store()
    api.download(STUB, registry=store)
    os.rename(store, str(tmp_path / "moved"))
    assert api.info(STUB, registry=store).version == 1  # alias from refs, with a warning
    code, _, err = cli(
        "download", "zoo:cv/classification/mlp/fashion_mnist/pruned80", "--registry", store
    )
    assert code != 0 and "not in the cache" in err and store in err


def alter_one_byte(store: str, sha: str) -> None:
    path = Path(store).joinpath(*blob_key(sha).split("/"))
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_altered_blob_is_refused_and_nothing_is_cached(
    small_store: Callable[..., str], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    store = small_store()
    entry = api.info(STUB + "@v1", registry=store)
    weights = entry.file("model.safetensors")
    alter_one_byte(store, weights.sha256)
    with pytest.raises(DownloadIntegrityError) as caught:
        api.download(STUB + "@v1", registry=store)
    message = str(caught.value)
    assert entry.ref in message and "model.safetensors" in message
    assert weights.sha256 in message and caught.value.actual in message
    assert caught.value.actual != weights.sha256
    cache = Cache(tmp_path / "cache")
    assert not cache.blob(weights.sha256).exists()
    assert not list((tmp_path / "cache" / "blobs").glob("*.incomplete"))
    assert not list((tmp_path / "cache").rglob("entries/v1.json"))
    code, _, err = cli("download", STUB + "@v1", "--registry", store)
    assert code != 0 and "model.safetensors" in err and weights.sha256 in err


SLOW_CHILD = """
import json, sys, time
from zoo.client.session import Session
from zoo.storage.local import LocalStore

class Slow(LocalStore):
    served = 0
    def iter_blob(self, sha256, start=0, end=None, chunk_size=1 << 20):
        for block in super().iter_blob(sha256, start, end, chunk_size=256 * 1024):
            time.sleep(float(sys.argv[3]))
            Slow.served += len(block)
            yield block

store, ref = sys.argv[1], sys.argv[2]
snap = Session(store=Slow(store, create=False), progress=False).download(ref)
print(json.dumps({"served": Slow.served, "folder": str(snap.folder)}))
"""


def spawn(store: str, ref: str, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_CHILD, store, ref, str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        cwd=str(Path(__file__).resolve().parents[2]),
    )


def test_killed_download_resumes_without_refetching(
    small_store: Callable[..., str], tmp_path: Path
) -> None:
    store = small_store(BIG)
    ref = BIG.stub + "@v1"
    weights = api.info(ref, registry=store).file("model.safetensors")
    assert weights.size > 4 * (256 * 1024)
    blobs = tmp_path / "cache" / "blobs"
    child = spawn(store, ref, 0.05)
    partial_size = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and partial_size < 3 * 256 * 1024:
        partials = list(blobs.glob(f"{weights.sha256}.*.incomplete")) if blobs.is_dir() else []
        partial_size = max((p.stat().st_size for p in partials), default=0)
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    partials = list(blobs.glob(f"{weights.sha256}.*.incomplete"))
    assert len(partials) == 1
    kept = partials[0].stat().st_size
    assert 0 < kept < weights.size

    counting = CountingStore(store)
    snap = Session(store=counting, progress=False).download(ref)
    requested = sum(n for sha, _, n in counting.requests if sha == weights.sha256)
    assert requested <= weights.size - kept + CHUNK
    assert requested < weights.size
    assert sha256_file(snap.folder / "model.safetensors") == weights.sha256
    assert not list(blobs.glob("*.incomplete"))


def test_four_processes_download_one_copy(small_store: Callable[..., str], tmp_path: Path) -> None:
    store = small_store(BIG)
    ref = BIG.stub + "@v1"
    entry = api.info(ref, registry=store)
    children = [spawn(store, ref, 0.01) for _ in range(4)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["folder"] for r in results}) == 1
    # Each file was transferred by exactly one of the four processes.
    assert sum(r["served"] for r in results) == entry.size
    blobs = tmp_path / "cache" / "blobs"
    names = sorted(p.name for p in blobs.iterdir())
    assert names == sorted(f.sha256 for f in entry.files)
    for record in entry.files:
        assert sha256_file(blobs / record.sha256) == record.sha256


def test_search_offline_says_what_to_do(
    small_store: Callable[..., str], cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = small_store()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    code, _, err = cli("search", "--registry", store)
    assert code == 3 and "offline mode is on" in err and "unset ZOO_OFFLINE" in err
