"""A store in a local folder: the embedded default (`make demo` publishes here).

Immutable objects are created with a hard link from a finished temporary file, which
fails if the target exists: an atomic "create if absent" with no lock. The index document
is replaced under a file lock by write-temp-then-rename, so readers (who take no lock) see
the old document or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

from zoo.errors import (
    BlobNotFoundError,
    ChecksumMismatchError,
    StoreConflictError,
    StoreError,
    StoreUnreachableError,
)
from zoo.fsutil import atomic_write_bytes, synced_writer, temp_beside
from zoo.storage.base import CHUNK, Store, Versioned, blob_key, check_key, sha256_bytes

LOCK_DIR = ".locks"
LOCK_TIMEOUT_S = 120.0


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            # Like a server that does not answer: an unmounted or mistyped folder.
            raise StoreUnreachableError(
                f"local store {self.root} does not exist (a mistyped path, or a drive that "
                "is not mounted?)"
            )

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    # -- blobs ---------------------------------------------------------------------------

    def put_blob(self, sha256: str, source: str | os.PathLike[str]) -> bool:
        target = self._path(blob_key(sha256))
        if target.exists():
            return False
        with temp_beside(target, prefix=f".{sha256[:16]}.") as tmp:
            self._copy_verified(sha256, source, tmp)
            return self._link_new(tmp, target)

    def _copy_verified(self, sha256: str, source: str | os.PathLike[str], tmp: Path) -> None:
        digest = hashlib.sha256()
        with synced_writer(tmp) as out, open(source, "rb") as src:
            for block in iter(lambda: src.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise ChecksumMismatchError(str(source), sha256, digest.hexdigest(), "upload")

    def replace_blob(self, sha256: str, source: str | os.PathLike[str]) -> None:
        target = self._path(blob_key(sha256))
        with temp_beside(target, prefix=f".{sha256[:16]}.") as tmp:
            self._copy_verified(sha256, source, tmp)
            os.replace(tmp, target)

    def touch_blob(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._path(blob_key(sha256)))

    def objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        for key in self.list(prefix):
            with contextlib.suppress(FileNotFoundError):
                yield key, self._path(key).stat().st_mtime

    def modified(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def temporaries(self) -> Iterator[tuple[str, float]]:
        # temp_beside names them `.<target>.<random>.tmp` / `.<sha16>.<random>.tmp`.
        for folder in (self.root / "blobs", self.root / "entries", self.root / "index"):
            for path in folder.rglob(".*.tmp") if folder.is_dir() else ():
                with contextlib.suppress(FileNotFoundError):
                    yield path.relative_to(self.root).as_posix(), path.stat().st_mtime

    def delete_temporary(self, name: str) -> None:
        path = (self.root / name).resolve()
        if not path.name.endswith(".tmp") or not path.is_relative_to(self.root):
            raise StoreError(f"{name!r} is not a temporary file of {self.url}")
        path.unlink(missing_ok=True)

    @staticmethod
    def _link_new(tmp: Path, target: Path) -> bool:
        # link() refuses an existing target: creation is atomic and never overwrites.
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        return True

    def blob_size(self, sha256: str) -> int:
        path = self._path(blob_key(sha256))
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} not found in store {self.url}") from None

    def iter_blob(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        path = self._path(blob_key(sha256))
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} not found in store {self.url}") from None
        return self._iter_file(handle, start, end, chunk_size)

    @staticmethod
    def _iter_file(
        handle: BinaryIO, start: int, end: int | None, chunk_size: int
    ) -> Iterator[bytes]:
        with handle:
            handle.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                block = handle.read(size)
                if not block:
                    return
                if remaining is not None:
                    remaining -= len(block)
                yield block

    # -- documents -----------------------------------------------------------------------

    def get(self, key: str) -> Versioned | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return Versioned(data, sha256_bytes(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        if target.exists():
            return False
        with temp_beside(target) as tmp:
            with synced_writer(tmp) as out:
                out.write(data)
            return self._link_new(tmp, target)

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        target = self._path(key)
        lock_path = self.root / LOCK_DIR / (key.replace("/", "%") + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
                current = self.get(key)
                if (current.etag if current else None) != etag:
                    raise StoreConflictError(
                        f"{self.url}/{key} changed since it was read (expected etag {etag})"
                    )
                atomic_write_bytes(target, data)
        except Timeout:
            raise StoreError(
                f"could not lock {lock_path} within {LOCK_TIMEOUT_S:.0f} s; another publisher "
                "holds it (a crashed one releases it automatically)"
            ) from None
        return sha256_bytes(data)

    def list(self, prefix: str = "") -> Iterator[str]:
        # Walk only the folder the prefix names, skipping temporaries and locks.
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(base_key) if base_key else self.root
        if not base.is_dir():
            return
        for folder, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    yield key
