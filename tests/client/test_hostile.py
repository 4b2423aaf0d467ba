"""A damaged or hostile registry against the client: on a local store and on SeaweedFS.

Each test starts from a real published store and changes it the way someone with write
access to it could (tests/hostile.py), then runs the CLI as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.client.conftest import SMALL, CliResult
from tests.demo_models import DemoModel, make_export
from tests.hostile import file_of, rewrite_entry, seaweed_fixture, silent_port, swap_root
from tests.storage._seaweed import seaweedfs
from zoo.client import api
from zoo.client.cache import Cache
from zoo.client.session import Session
from zoo.errors import CompressedFormatError, DownloadIntegrityError
from zoo.fsutil import sha256_file
from zoo.index.publish import publish
from zoo.storage.base import CHUNK, Store, open_store
from zoo.storage.local import LocalStore
from zoo.storage.s3 import S3Store
from zoo.storage.seaweed import SeaweedServer

BUCKET = "zoo-hostile"
REF = SMALL.stub + "@v1"
REPO = Path(__file__).resolve().parents[2]


seaweed = seaweed_fixture(BUCKET)


@pytest.fixture(params=["local", "s3"])
def registry(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[str, Store]:
    """A registry holding SMALL, reached by URL (+ endpoint variables for S3)."""
    if request.param == "local":
        url = str(tmp_path / "store")
    else:
        server: SeaweedServer = request.getfixturevalue("seaweed")
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        url = f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"
    publish(make_export(tmp_path / "export", SMALL), url)
    return url, open_store(url)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# -- a crafted sha256 is never a path ---------------------------------------------------


@pytest.mark.parametrize("form", ["relative", "absolute"])
@pytest.mark.parametrize("size", ["other", "same"])
def test_crafted_sha256_touches_nothing_outside_the_cache(
    registry: tuple[str, Store],
    cli: Callable[..., CliResult],
    tmp_path: Path,
    form: str,
    size: str,
) -> None:
    url, store = registry
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"a user's file")
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    crafted = (
        os.path.relpath(outside / "victim", cache / "blobs")
        if form == "relative"
        else str(outside / "victim")
    )

    def edit(entry: dict) -> None:  # type: ignore[type-arg]
        weights = file_of(entry, "model.safetensors")
        weights["sha256"] = crafted
        # "same": the cache would trust it and link the snapshot to it; "other": the
        # "wrong size, remove the blob" branch would delete it.
        weights["size"] = len(b"a user's file") if size == "same" else 12345

    rewrite_entry(store, REF, edit)
    before = _tree(outside)
    code, out, err = cli("download", REF, "--registry", url, "--to", str(tmp_path / "to"))
    assert code == 2, (out, err)
    assert "not a sha256" in err and "Traceback" not in err
    assert _tree(outside) == before  # not deleted, no .lock / .incomplete beside it
    to = tmp_path / "to"
    assert not to.exists() or b"a user's file" not in b"".join(_tree(to).values())


def test_index_verify_never_opens_a_crafted_path(
    registry: tuple[str, Store], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    url, store = registry
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    rewrite_entry(
        store, REF, lambda e: file_of(e, "config.json").__setitem__("sha256", str(victim))
    )
    code, _, err = cli("index", "verify", "--store", url)
    assert code != 0 and "not a sha256" in err and "Traceback" not in err
    assert victim.read_bytes() == b"keep me"


# -- `--to DIR` writes only the snapshot's files ------------------------------------------


def test_download_to_keeps_what_was_already_there(
    small_store: Callable[..., str], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    store = small_store()
    dest = tmp_path / "mine"
    (dest / "notes").mkdir(parents=True)
    (dest / "notes" / "todo.txt").write_text("my notes")
    (dest / "config.json").write_text("an old copy")
    code, _, err = cli("download", REF, "--registry", store, "--to", str(dest))
    assert code == 0, err
    assert (dest / "notes" / "todo.txt").read_text() == "my notes"  # not written: kept
    snapshot = Path(api.download(REF, registry=store))
    assert (dest / "config.json").read_bytes() == (snapshot / "config.json").read_bytes()
    assert not (dest / "config.json").is_symlink()


# -- the cache knows which server it talked to --------------------------------------------


def test_two_servers_with_one_url_do_not_share_a_cache(
    seaweed: SeaweedServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    url = f"s3://{BUCKET}/same-prefix"
    with seaweedfs(tmp_path_factory.mktemp("second")) as other:
        other.make_bucket(BUCKET)
        a = replace_seed(SMALL, 1)
        b = replace_seed(SMALL, 2)
        weights = {}
        for server, model, name in ((seaweed, a, "a"), (other, b, "b")):
            export = make_export(tmp_path / name, model)
            publish(export, S3Store(BUCKET, "same-prefix", **server.client_kwargs()))
            weights[name] = sha256_file(export / "model.safetensors")
        got = {}
        for server, name in ((seaweed, "a"), (other, "b")):
            for key, value in server.env().items():
                monkeypatch.setenv(key, value)
            folder = Path(api.download(REF, registry=url))
            got[name] = sha256_file(folder / "model.safetensors")
    assert got == weights  # server B's weights from server B, not A's from the cache


def replace_seed(model: DemoModel, seed: int) -> DemoModel:
    from dataclasses import replace

    return replace(model, seed=seed)


# -- a server that accepts and never answers ----------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    with silent_port() as port:
        yield port


def test_hung_endpoint_fails_with_exit_3_within_the_timeout(
    silent_server: int, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ZOO_S3_ENDPOINT_URL": f"http://127.0.0.1:{silent_server}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ZOO_TIMEOUT": "2",
        "ZOO_CACHE_DIR": str(tmp_path / "cache"),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "search", "--registry", "s3://zoo/models"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "cannot reach" in done.stderr and "Traceback" not in done.stderr
    # ZOO_TIMEOUT bounds the silent wait; the rest is the interpreter and imports.
    assert elapsed < 2 + 10, elapsed


# -- a swapped, longer object is cut at the recorded size + 1 byte ------------------------


class Counting:
    """Wraps a real store's reads and counts the bytes the server actually sent."""

    def __init__(self) -> None:
        self.sent = 0

    def wrap(self, store: Store) -> Store:
        original = store.iter_blob

        def iter_blob(
            sha256: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
        ) -> Iterator[bytes]:
            for block in original(sha256, start, end, chunk_size):
                self.sent += len(block)
                yield block

        store.iter_blob = iter_blob  # type: ignore[method-assign]
        return store


def test_download_stops_one_byte_past_the_recorded_size(
    registry: tuple[str, Store], tmp_path: Path
) -> None:
    url, store = registry
    entry = api.info(REF, registry=url, cache_dir=tmp_path / "probe")
    weights = entry.file("model.safetensors")
    swapped = tmp_path / "swapped"
    swapped.write_bytes(os.urandom(weights.size * 20))
    store.replace_blob(sha256_file(swapped), swapped)  # put the bytes there...
    # ...and behind the index's back under the weights' own key
    if isinstance(store, LocalStore):
        target = store.root / "blobs" / "sha256" / weights.sha256[:2] / weights.sha256
        target.write_bytes(swapped.read_bytes())
    else:
        assert isinstance(store, S3Store)
        store.client.put_object(
            Bucket=store.bucket,
            Key=store._key(f"blobs/sha256/{weights.sha256[:2]}/{weights.sha256}"),
            Body=swapped.read_bytes(),
        )
    counter = Counting()
    session = Session(store=counter.wrap(open_store(url)), cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(DownloadIntegrityError):
        session.download(REF)
    # The other files are small; the weights stream stopped at size + 1.
    others = sum(f.size for f in entry.files if f.path != "model.safetensors")
    assert counter.sent <= weights.size + 1 + others
    assert not list((tmp_path / "c" / "blobs").glob(f"{weights.sha256}*"))


# -- damaged, unauthorised, unreachable: three errors, one fallback -----------------------


def test_damaged_index_is_reported_as_damaged_not_unreachable(
    registry: tuple[str, Store], cli: Callable[..., CliResult]
) -> None:
    url, store = registry
    assert cli("download", SMALL.stub, "--registry", url)[0] == 0  # the alias is now cached
    swap_root(store, lambda root: root.__setitem__("shards", [1, 2, 3]))
    for argv in (
        ("download", SMALL.stub),
        ("show", SMALL.stub),
        ("search",),
        ("versions", SMALL.stub),
    ):
        code, _, err = cli(*argv, "--registry", url)
        assert code == 2, (argv, err)
        assert "shards must be an object" in err and "unreachable" not in err


def test_refused_credentials_do_not_fall_back_to_the_cache(
    seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliResult]
) -> None:
    url = f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    publish(make_export(Path(os.environ["ZOO_CACHE_DIR"]).parent / "e", SMALL), url)
    assert cli("download", SMALL.stub, "--registry", url)[0] == 0
    import boto3

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the first credentials
    code, out, err = cli("download", SMALL.stub, "--registry", url)
    assert code == 3 and not out
    assert "refused our credentials" in err and "using cached" not in err


def test_unreachable_registry_falls_back_to_the_cache_and_says_so(
    small_store: Callable[..., str], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    store = Path(small_store())
    assert cli("download", SMALL.stub, "--registry", str(store))[0] == 0
    store.rename(tmp_path / "unmounted")
    code, out, err = cli("download", SMALL.stub, "--registry", str(store))
    assert code == 0 and out.strip()
    assert "registry unreachable" in err and "using cached " + REF in err


@pytest.mark.parametrize("url", ["https://zoo.example.com/models", "http://127.0.0.1:1/x"])
def test_http_registry_url_is_refused_as_unsupported(
    cli: Callable[..., CliResult], url: str
) -> None:
    code, _, err = cli("download", SMALL.stub, "--registry", url)
    assert code == 2 and "unsupported store URL" in err


# -- tracebacks become one-line errors ----------------------------------------------------


def test_pickle_named_safetensors_is_a_one_line_error(
    registry: tuple[str, Store], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    import torch

    url, store = registry
    pickled = tmp_path / "model.safetensors"
    torch.save({"weight": torch.zeros(2)}, pickled)
    sha = sha256_file(pickled)
    store.put_blob(sha, pickled)

    def edit(entry: dict) -> None:  # type: ignore[type-arg]
        file_of(entry, "model.safetensors").update(sha256=sha, size=pickled.stat().st_size)

    rewrite_entry(store, REF, edit)
    code, _, err = cli("validate", REF, "--registry", url)
    assert code == 1 and "cannot load the model" in err and "Traceback" not in err
    with pytest.raises(Exception) as caught:
        api.load(REF, registry=url)
    assert "cannot load the model" in str(caught.value)


# -- SHA256SUMS entries stay inside their folder ------------------------------------------


@pytest.mark.parametrize("name", ["../../etc/hostname", "/etc/hostname", "a\\..\\..\\x"])
def test_load_exported_refuses_checksums_outside_its_folder(tmp_path: Path, name: str) -> None:
    from zoo.compress.load import verify_folder

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  {name}\n")
    with pytest.raises(CompressedFormatError, match="refused"):
        verify_folder(folder, {})


# -- rot in the cache -----------------------------------------------------------------------


def test_cache_verify_finds_a_rotted_blob(
    small_store: Callable[..., str], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    store = small_store()
    folder = Path(api.download(REF, registry=store))
    blob = (folder / "model.safetensors").resolve()
    assert cli("cache", "verify")[0] == 0
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash shows it
    blob.write_bytes(bytes(data))
    code, out, _ = cli("cache", "verify")
    assert code == 1 and f"damaged: {blob}" in out
    assert cli("cache", "verify", "--remove")[0] == 0
    assert not blob.exists()
    again = Path(api.download(REF, registry=store))
    assert sha256_file(again / "model.safetensors") == blob.name
    assert Cache(tmp_path / "cache").blob(blob.name).is_file()
