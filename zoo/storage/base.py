"""The one interface every store implements, and the URL scheme that picks a backend.

A store holds three kinds of things, all under string keys with `/` separators:

- blobs: content-addressed, immutable, at `blobs/sha256/<ab>/<sha256>`; written only if
  absent (S3 `If-None-Match: *`, local no-clobber link), so two publishers uploading the
  same file never overwrite each other and a blob never changes once there;
- small documents (entries, index shards): immutable too, written with `put_if_absent`;
- the published index document at `INDEX_KEY`: the one mutable object, replaced only by
  compare-and-swap on its etag (S3 `If-Match`, local lock + compare + rename).

URLs: a plain path or `file://PATH` (local folder), `s3://bucket/prefix` (endpoint from
ZOO_S3_ENDPOINT_URL, then AWS_ENDPOINT_URL, else AWS), `hf://org/repo` (Hugging Face Hub).
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import (
    BlobNotFoundError,
    ChecksumMismatchError,
    ConfigError,
    SchemaError,
    StoreError,
)
from zoo.storage import names
from zoo.storage.schemes import backend_class, is_remote, local_identity, local_path, scheme_of

INDEX_KEY = "index.json"
BLOB_PREFIX = "blobs/sha256/"
CHUNK = 1 << 20
# $ZOO_STORE names the store; $ZOO_REGISTRY is accepted as a synonym (the client's word).
ENV_STORE = ("ZOO_STORE", "ZOO_REGISTRY")
DEFAULT_STORE_DIR = ".zoo/store"
ENV_TIMEOUT = "ZOO_TIMEOUT"
#: Seconds a store may stay silent (connect or read) before the command gives up.
DEFAULT_TIMEOUT_S = 30.0

_KEY_RE = re.compile(r"^[A-Za-z0-9_.@=+-]+(/[A-Za-z0-9_.@=+-]+)*$")


@dataclass(frozen=True)
class Versioned:
    """A document's bytes with the etag to pass back for a compare-and-swap."""

    data: bytes
    etag: str


def blob_key(sha256: str) -> str:
    names.check_sha256(sha256, "blob")
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256}"


def check_key(key: str) -> str:
    """Keys are relative, `/`-separated, with no empty, `.` or `..` parts (no escaping)."""
    if (
        not isinstance(key, str)
        or not _KEY_RE.match(key)
        or any(part in (".", "..") for part in key.split("/"))
    ):
        raise SchemaError("store key", f"{key!r} is not a valid key; refused")
    return key


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store(abc.ABC):
    """A place that holds blobs, immutable documents and one compare-and-swap index."""

    url: str

    # -- blobs (content-addressed, immutable) --------------------------------------------

    @abc.abstractmethod
    def put_blob(self, sha256: str, source: str | os.PathLike[str]) -> bool:
        """Upload the file `source` as blob `sha256` unless a blob with that hash exists.

        Returns True if this call wrote it, False if it was already there. The file's
        hash is checked first, so a blob's key always matches its content.
        """

    @abc.abstractmethod
    def blob_size(self, sha256: str) -> int:
        """Size in bytes; raises BlobNotFoundError if absent."""

    def has_blob(self, sha256: str) -> bool:
        try:
            self.blob_size(sha256)
        except BlobNotFoundError:
            return False
        return True

    @abc.abstractmethod
    def iter_blob(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        """Stream bytes [start, end) of a blob (end None: to the end), for resumable
        downloads. Raises BlobNotFoundError if absent."""

    def read_blob(self, sha256: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of a blob, in memory."""
        return b"".join(self.iter_blob(sha256, start, end))

    def get_blob(self, sha256: str, dest: str | os.PathLike[str]) -> Path:
        """Download a whole blob to `dest` (overwritten), verifying its sha256."""
        target = Path(dest)
        digest = hashlib.sha256()
        with open(target, "wb") as handle:
            for block in self.iter_blob(sha256):
                digest.update(block)
                handle.write(block)
        if digest.hexdigest() != sha256:
            target.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{self.url}/{blob_key(sha256)}", sha256, digest.hexdigest(), "blob"
            )
        return target

    @abc.abstractmethod
    def replace_blob(self, sha256: str, source: str | os.PathLike[str]) -> None:
        """Overwrite blob `sha256` with the file `source` (whose hash is checked first):
        the repair of a stored copy that no longer matches its name."""

    def touch_blob(self, sha256: str) -> None:  # noqa: B027 - optional for a backend
        """Make a reused blob young again, so `zoo gc`'s grace period protects it while
        the publish that reuses it runs (a no-op where a store cannot do it)."""

    def stored_sha256(self, sha256: str, size: int) -> str | None:
        """The sha256 of the stored blob, reading at most `size` + 1 bytes; None when the
        stored object is longer or shorter than `size` (it cannot be the blob then)."""
        digest = hashlib.sha256()
        read = 0
        for block in self.iter_blob(sha256, 0, size + 1):
            digest.update(block)
            read += len(block)
            if read > size:
                return None
        return digest.hexdigest() if read == size else None

    def ensure_blob(self, sha256: str, source: str | os.PathLike[str]) -> str:
        """Upload `source` as blob `sha256`, or check the copy already stored and replace it
        when its bytes differ. Returns "uploaded", "present" or "repaired"."""
        if self.put_blob(sha256, source):
            return "uploaded"
        if self.stored_sha256(sha256, os.path.getsize(source)) == sha256:
            self.touch_blob(sha256)
            return "present"
        self.replace_blob(sha256, source)
        return "repaired"

    # -- housekeeping (`zoo gc`) --------------------------------------------------------

    def objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(key, last-modified time in epoch seconds) of every object under `prefix`."""
        raise StoreError(f"{self.url}: this store cannot list object ages; gc is unsupported")

    def modified(self, key: str) -> float | None:
        """Last-modified time of `key` in epoch seconds, None if it is gone."""
        raise StoreError(f"{self.url}: this store cannot tell object ages; gc is unsupported")

    def delete(self, key: str) -> None:
        raise StoreError(f"{self.url}: this store cannot delete objects; gc is unsupported")

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """(name, modified time) of upload leftovers of killed publishers (local stores
        write blobs through temporary files; S3 uploads are single PUTs and leave none)."""
        return iter(())

    def delete_temporary(self, name: str) -> None:
        raise StoreError(f"{self.url}: no temporary files to delete")

    # -- small documents -----------------------------------------------------------------

    @abc.abstractmethod
    def get(self, key: str) -> Versioned | None:
        """A document's bytes and etag, or None if absent."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create `key` unless it exists (`If-None-Match: *`). True if this call wrote it."""

    @abc.abstractmethod
    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        """Replace `key` only if its current etag is `etag` (`If-Match`); `etag` None means
        it must not exist yet. Returns the new etag; raises StoreConflictError on a lost race."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with `prefix`, in no particular order."""

    # -- the published index document ----------------------------------------------------

    def read_index(self) -> Versioned | None:
        return self.get(INDEX_KEY)

    def swap_index(self, data: bytes, etag: str | None) -> str:
        return self.put_if_match(INDEX_KEY, data, etag)

    @property
    def identity(self) -> str:
        """Everything that names this store (for S3 and the Hub the endpoint too): two
        stores with equal URLs on different servers must not share a cache folder."""
        return self.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def store_timeout() -> float:
    """$ZOO_TIMEOUT (seconds, > 0) or 30 s: how long a store may stay silent."""
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ConfigError(f"{ENV_TIMEOUT}={text!r}: expected seconds, a number in (0, 3600]")
    return value


def store_identity(url: str) -> str:
    """The identity (see `Store.identity`) of the store at `url`, without opening it."""
    if is_remote(url):  # any scheme outside the table raises here
        return open_store(url, create=False).identity
    return local_identity(url)


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists() or (folder / "dvc.yaml").is_file():
            return folder
    return None


def default_store_url(url: str | os.PathLike[str] | None = None) -> str:
    """The store to use: `url` if given, then $ZOO_STORE / $ZOO_REGISTRY, then `.zoo/store`
    in the repository (the folder holding `.git` or `dvc.yaml` above the working directory).

    Resolved on every call (never at import) so tests and users can point it elsewhere.
    """
    if url:
        return os.fspath(url)
    for name in ENV_STORE:
        if os.environ.get(name):
            return os.environ[name]
    root = _repo_root(Path.cwd()) or Path.cwd()
    return str(root / DEFAULT_STORE_DIR)


def open_store(url: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open the store at `url` (see `default_store_url` for the fallback order)."""
    resolved = default_store_url(url)
    scheme = scheme_of(resolved)
    store_class = backend_class(scheme)
    if scheme == "file":
        store: Store = store_class(local_path(resolved), create=create)
    else:
        store = store_class.from_url(resolved)
    return store
