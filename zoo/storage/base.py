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

from zoo.errors import BlobNotFoundError, ChecksumMismatchError, StoreError
from zoo.storage.schemes import backend_class, local_path, scheme_of

INDEX_KEY = "index.json"
BLOB_PREFIX = "blobs/sha256/"
CHUNK = 1 << 20
# $ZOO_STORE names the store; $ZOO_REGISTRY is accepted as a synonym (the client's word).
ENV_STORE = ("ZOO_STORE", "ZOO_REGISTRY")
DEFAULT_STORE_DIR = ".zoo/store"

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_.@=+-]+(/[A-Za-z0-9_.@=+-]+)*$")


@dataclass(frozen=True)
class Versioned:
    """A document's bytes with the etag to pass back for a compare-and-swap."""

    data: bytes
    etag: str


def blob_key(sha256: str) -> str:
    check_sha256(sha256)
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256}"


def check_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA_RE.match(sha256):
        raise StoreError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def check_key(key: str) -> str:
    """Keys are relative, `/`-separated, with no empty, `.` or `..` parts (no escaping)."""
    if not _KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise StoreError(f"invalid store key {key!r}")
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


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
