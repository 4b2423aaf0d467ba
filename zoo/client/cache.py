"""The local model cache, laid out after the Hugging Face Hub's.

    <root>/
      blobs/<sha256>                      each file once, named by its content; shared by
                                          every model, version and registry
      blobs/<sha256>.<uid>.incomplete     a download in progress (or killed: resumed later)
      .locks/<sha256>.lock                one lock per blob: one writer, others wait
      models/<registry-key>/<stub-dir>/
        snapshots/<version>/<path>        relative symlink to ../../../..(…)/blobs/<sha256>
        entries/<version>.json            the index entry, written last: its presence means
                                          the snapshot is complete (no store request needed)
        refs/<alias>                      the version an alias pointed to when last resolved

Blobs are shared across registries because a sha256 names content, not origin; snapshots
and refs are per registry because two registries may publish different `v1`s of one stub.
The root comes from an argument, then `ZOO_CACHE_DIR`, then the user's cache folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from zoo.fsutil import atomic_write_text
from zoo.storage.names import check_sha256

BLOBS = "blobs"
LOCKS = ".locks"
MODELS = "models"
INCOMPLETE = ".incomplete"


def default_cache_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Argument, then ZOO_CACHE_DIR, then e.g. ~/.cache/zoo (resolved on every call)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("ZOO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("zoo", appauthor=False))


def registry_key(url: str) -> str:
    """A readable, collision-free folder name for a registry identity (its URL plus, for S3
    and the Hub, the endpoint: see `Store.identity`)."""
    # Readable part: the URL without the `@endpoint` a remote identity ends with; the hash
    # covers the whole identity, so equal URLs on two servers still get two folders.
    readable = url.rpartition("@")[0] if url.startswith(("s3://", "hf://")) else url
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", readable or url).strip("-.")[-40:] or "registry"
    return f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Cache:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str] | None = None) -> Cache:
        return cls(default_cache_root(root))

    # -- blobs ------------------------------------------------------------------------
    # A sha256 comes from an index: checked here, where it becomes a path, so no caller
    # can build one outside the cache from a crafted entry.
    def blob(self, sha256: str) -> Path:
        return self.root / BLOBS / check_sha256(sha256, "cache blob")

    def lock(self, sha256: str) -> Path:
        return self.root / LOCKS / f"{check_sha256(sha256, 'cache lock')}.lock"

    def partials(self, sha256: str) -> list[Path]:
        folder = self.root / BLOBS
        if not folder.is_dir():
            return []
        return sorted(folder.glob(f"{check_sha256(sha256, 'cache blob')}.*{INCOMPLETE}"))

    def blobs(self) -> list[Path]:
        folder = self.root / BLOBS
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if len(p.name) == 64 and p.is_file())

    # -- models -----------------------------------------------------------------------
    def model_dir(self, registry: str, stub_dir: str) -> Path:
        return self.root / MODELS / registry_key(registry) / stub_dir

    def snapshot(self, registry: str, stub_dir: str, version: str) -> Path:
        return self.model_dir(registry, stub_dir) / "snapshots" / version

    def entry_file(self, registry: str, stub_dir: str, version: str) -> Path:
        return self.model_dir(registry, stub_dir) / "entries" / f"{version}.json"

    def read_ref(self, registry: str, stub_dir: str, alias: str) -> str | None:
        path = self.model_dir(registry, stub_dir) / "refs" / alias
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def write_ref(self, registry: str, stub_dir: str, alias: str, version: str) -> None:
        path = self.model_dir(registry, stub_dir) / "refs" / alias
        if self.read_ref(registry, stub_dir, alias) != version:
            atomic_write_text(path, version)

    def link(self, snapshot_file: Path, sha256: str) -> None:
        """Point a snapshot path at its blob: a relative symlink, or a hard link/copy where
        the filesystem refuses symlinks (the same fallback the Hub client uses)."""
        snapshot_file.parent.mkdir(parents=True, exist_ok=True)
        blob = self.blob(sha256)
        tmp = snapshot_file.with_name(f".{snapshot_file.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(os.path.relpath(blob, snapshot_file.parent), tmp)
        except OSError:
            try:
                os.link(blob, tmp)
            except OSError:
                import shutil

                shutil.copyfile(blob, tmp)
        os.replace(tmp, snapshot_file)  # atomic: a reader never sees a missing link

    def model_dirs(self) -> list[Path]:
        base = self.root / MODELS
        if not base.is_dir():
            return []
        return sorted(p for reg in base.iterdir() if reg.is_dir() for p in reg.iterdir())
