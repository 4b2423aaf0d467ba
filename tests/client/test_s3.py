"""The same client against S3: a real SeaweedFS server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.client.conftest import SMALL, CliResult
from tests.demo_models import make_export
from tests.storage._seaweed import seaweedfs
from zoo.client import api
from zoo.client.cache import Cache
from zoo.client.session import Session
from zoo.errors import DownloadIntegrityError
from zoo.fsutil import sha256_file
from zoo.index.publish import publish
from zoo.storage.base import CHUNK, blob_key
from zoo.storage.s3 import S3Store
from zoo.storage.seaweed import SeaweedServer

BUCKET = "zoo-client-tests"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.make_bucket(BUCKET)
        yield server


@pytest.fixture
def s3_registry(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An `s3://` registry holding SMALL, reached the way users reach one: URL + env."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    url = f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"
    publish(make_export(tmp_path / "export", SMALL), url)
    return url


def test_search_download_load_validate_over_s3(
    s3_registry: str, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    hits = api.search(registry=s3_registry)
    assert [h.ref for h in hits] == [SMALL.stub + "@v1"]
    model = api.load(SMALL.stub, registry=s3_registry)
    assert model.zoo_ref == SMALL.stub + "@v1"
    assert api.validate(SMALL.stub + "@v1", registry=s3_registry).ok
    code, out, _ = cli("search", "--registry", s3_registry)
    assert code == 0 and SMALL.stub in out
    # The cache is keyed by registry: the s3 snapshot lives under its own folder.
    assert any(
        "s3-" in p.name or "zoo-client-tests" in p.name
        for p in (tmp_path / "cache" / "models").iterdir()
    )


def test_altered_s3_object_is_refused(
    s3_registry: str, seaweed: SeaweedServer, tmp_path: Path
) -> None:
    entry = api.info(SMALL.stub + "@v1", registry=s3_registry)
    weights = entry.file("model.safetensors")
    prefix = s3_registry.split("/", 3)[3]
    key = f"{prefix}/{blob_key(weights.sha256)}"
    client = seaweed.client()
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[100] ^= 0x01
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))  # behind the index's back
    with pytest.raises(DownloadIntegrityError) as caught:
        api.download(SMALL.stub + "@v1", registry=s3_registry)
    assert weights.sha256 in str(caught.value) and "model.safetensors" in str(caught.value)
    assert not Cache(tmp_path / "cache").blob(weights.sha256).exists()
    assert not list((tmp_path / "cache" / "blobs").glob("*.incomplete"))


class CountingS3(S3Store):
    """The real S3 store, recording the byte ranges asked of the server."""

    requested: ClassVar[list[tuple[str, int, int]]] = []

    def iter_blob(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        stop = self.blob_size(sha256) if end is None else end
        CountingS3.requested.append((sha256, start, stop - start))
        return super().iter_blob(sha256, start, end, chunk_size)


def test_resume_over_s3_requests_only_the_missing_bytes(s3_registry: str, tmp_path: Path) -> None:
    ref = SMALL.stub + "@v1"
    first = Path(api.download(ref, registry=s3_registry, cache_dir=tmp_path / "first"))
    weights = api.info(ref, registry=s3_registry).file("model.safetensors")
    half = weights.size // 2
    # A download interrupted halfway leaves this behind (see test_download for a real kill).
    blobs = tmp_path / "second" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{weights.sha256}.killed.incomplete").write_bytes(
        (first / "model.safetensors").read_bytes()[:half]
    )
    CountingS3.requested.clear()
    store = CountingS3.from_url(s3_registry)
    snap = Session(store=store, cache_dir=tmp_path / "second", progress=False).download(ref)
    asked = [(start, n) for sha, start, n in CountingS3.requested if sha == weights.sha256]
    # The rest, plus the one byte that would reveal a longer (swapped) object.
    assert asked == [(half, weights.size + 1 - half)]
    assert sha256_file(snap.folder / "model.safetensors") == weights.sha256
