"""Inspect and clean the cache: what `zoo cache ls` and `zoo cache prune` do."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from zoo.client.cache import Cache


@dataclass(frozen=True)
class CachedVersion:
    registry_dir: str
    stub: str
    version: str
    files: int
    size: int
    complete: bool
    aliases: list[str] = field(default_factory=list)
    folder: str = ""

    @property
    def ref(self) -> str:
        return f"{self.stub}@{self.version}"


def scan(cache: Cache) -> list[CachedVersion]:
    out: list[CachedVersion] = []
    for model in cache.model_dirs():
        refs: dict[str, list[str]] = {}
        for ref in sorted((model / "refs").glob("*")):
            refs.setdefault(ref.read_text().strip(), []).append(ref.name)
        for snap in sorted((model / "snapshots").glob("v*")):
            entry_file = model / "entries" / f"{snap.name}.json"
            stub = "zoo:" + model.name.replace("--", "/")
            files = size = 0
            if entry_file.is_file():
                entry = json.loads(entry_file.read_text())
                stub = entry.get("stub", stub)
                for record in entry.get("files", []):
                    files += 1
                    size += int(record.get("size", 0))
            out.append(
                CachedVersion(
                    registry_dir=model.parent.name,
                    stub=stub,
                    version=snap.name,
                    files=files,
                    size=size,
                    complete=entry_file.is_file(),
                    aliases=refs.get(snap.name, []),
                    folder=str(snap),
                )
            )
    return out


def _referenced(cache: Cache) -> set[str]:
    shas: set[str] = set()
    for model in cache.model_dirs():
        for snap in (model / "snapshots").glob("v*"):
            for path in snap.rglob("*"):
                if path.is_symlink():
                    shas.add(Path(os.readlink(path)).name)
        for entry_file in (model / "entries").glob("*.json"):
            for record in json.loads(entry_file.read_text()).get("files", []):
                shas.add(str(record.get("sha256")))
    return shas


@dataclass
class PruneResult:
    snapshots: list[str] = field(default_factory=list)
    blobs: int = 0
    partials: int = 0
    freed: int = 0


def prune(cache: Cache, refs: list[str] | None = None, everything: bool = False) -> PruneResult:
    """Remove the named versions (`stub@vN`) or all of them, then every blob no snapshot
    uses and every partial download nobody is writing (its lock is free)."""
    from filelock import FileLock, Timeout

    result = PruneResult()
    wanted = set(refs or [])
    for item in scan(cache):
        if everything or item.ref in wanted or not item.complete:
            model = Path(item.folder).parent.parent
            shutil.rmtree(item.folder, ignore_errors=True)
            (model / "entries" / f"{item.version}.json").unlink(missing_ok=True)
            for ref in (model / "refs").glob("*"):
                if ref.read_text().strip() == item.version:
                    ref.unlink(missing_ok=True)
            result.snapshots.append(item.ref)
    keep = _referenced(cache)
    for blob in cache.blobs():
        if blob.name not in keep:
            result.freed += blob.stat().st_size
            blob.unlink(missing_ok=True)
            result.blobs += 1
    blobs_dir = cache.root / "blobs"
    for partial in sorted(blobs_dir.glob("*.incomplete")) if blobs_dir.is_dir() else []:
        sha = partial.name.split(".", 1)[0]
        lock = FileLock(str(cache.lock(sha)), timeout=0)
        try:
            with lock:  # a live download holds it: leave its file alone
                if partial.exists():
                    result.freed += partial.stat().st_size
                    partial.unlink()
                    result.partials += 1
        except Timeout:
            continue
    return result


@dataclass
class CacheVerifyResult:
    checked: int = 0
    damaged: list[str] = field(default_factory=list)  # blob paths whose bytes changed
    removed: bool = False


def verify(cache: Cache, remove: bool = False) -> CacheVerifyResult:
    """Re-hash every cached blob (what `huggingface-cli scan-cache` leaves to you): a blob
    whose bytes rotted after download keeps its size, so only its hash shows it. With
    `remove`, damaged blobs are deleted and the next download fetches them again."""
    from zoo.fsutil import sha256_file

    result = CacheVerifyResult()
    for blob in cache.blobs():
        result.checked += 1
        if sha256_file(blob) != blob.name:
            result.damaged.append(str(blob))
            if remove:
                blob.unlink(missing_ok=True)
    result.removed = remove and bool(result.damaged)
    return result
