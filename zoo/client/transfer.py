"""Fetch one blob into the cache: resumable, verified, atomic, one writer at a time.

The sequence, and why:
1. A lock per blob (`.locks/<sha>.lock`, an OS file lock released if the process dies):
   four processes asking for the same model end with one copy, the others wait and reuse it.
2. Bytes go to a temporary file unique to this download (`<sha>.<uid>.incomplete`), never
   to the final name, so a reader can never see half a blob.
3. A partial file left by a killed download is adopted (renamed to our own unique name) and
   the transfer resumes at its end: only the missing bytes are requested again.
4. The sha256 is checked before the rename; a mismatch deletes the temporary file, so
   nothing corrupt stays in the cache, and raises an error naming both hashes.
5. `os.replace` into `blobs/<sha>`: atomic on one filesystem.

Large blobs are fetched as several byte ranges at once (like boto3's transfer manager),
but written strictly in order, so the partial file is always a prefix of the blob and a
resumed download asks only for what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from queue import Full, Queue

from zoo.client.cache import INCOMPLETE, Cache
from zoo.fsutil import CHUNK

#: Streams the blob's bytes [start, end) (end None: to its end), in chunks.
RangeReader = Callable[[int, int | None], Iterator[bytes]]

#: Blobs with more than this left to fetch travel as parallel ranges of PART bytes. High on
#: purpose: on loopback SeaweedFS one stream beat 2 or 4 parallel ranges for 64 MiB (the
#: stream outruns disk and hash); parallel ranges pay off on high-latency links.
PARALLEL_FROM = 128 << 20
PART = 8 << 20
WORKERS = 4


def _adopt_partial(cache: Cache, sha256: str, size: int) -> Path:
    """Take over the longest partial download (under the blob lock) and drop the others."""
    mine = cache.root / "blobs" / f"{sha256}.{uuid.uuid4().hex}{INCOMPLETE}"
    mine.parent.mkdir(parents=True, exist_ok=True)
    partials = [p for p in cache.partials(sha256) if p.stat().st_size <= size]
    best = max(partials, key=lambda p: p.stat().st_size, default=None)
    for stale in cache.partials(sha256):
        if stale != best:
            stale.unlink(missing_ok=True)
    if best is not None:
        os.replace(best, mine)
    else:
        mine.touch()
    return mine


def _hash_prefix(path: Path) -> tuple[hashlib._Hash, int]:
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
            done += len(block)
    return digest, done


_DONE = object()


def _prefetch(blocks: Iterator[bytes], depth: int = 8) -> Iterator[bytes]:
    """Iterate `blocks` on a helper thread, up to `depth` blocks ahead, so the network
    keeps streaming while this thread writes to disk (both release the GIL)."""
    queue: Queue[object] = Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            for block in blocks:
                while not stop.is_set():
                    try:
                        queue.put(block, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(_DONE)
        except BaseException as exc:  # handed over to the consuming thread
            queue.put(exc)

    thread = threading.Thread(target=pump, name="zoo-download", daemon=True)
    thread.start()
    try:
        while True:
            item = queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)


def _receive(
    partial: Path,
    digest: hashlib._Hash,
    blocks: Iterator[bytes],
    progress: Callable[[int], None] | None,
) -> None:
    """Append `blocks` to `partial` while hashing them.

    Three things overlap: the network (a prefetch thread), the disk (this thread) and the
    hash (a helper thread one block behind; hashlib releases the GIL on large buffers),
    so verification costs almost no extra time.
    """
    with ThreadPoolExecutor(max_workers=1) as hasher, open(partial, "ab") as handle:
        pending: Future[None] | None = None
        for block in _prefetch(blocks):
            if pending is not None:
                pending.result()  # keep hashing in order, one block in flight
            pending = hasher.submit(digest.update, block)
            handle.write(block)
            if progress:
                progress(len(block))
        if pending is not None:
            pending.result()
    # No fsync, like the Hub client: waiting for the disk would halve the download speed
    # on a busy machine, and a cache can be re-fetched. A blob cut short by a crash is
    # caught by the size check on every cache hit (`blob_is_intact`), and `zoo validate`
    # re-runs the samples.


def _parallel_ranges(
    read: RangeReader, start: int, size: int, part: int, workers: int
) -> Iterator[bytes]:
    """Bytes [start, size) as `part`-sized ranges fetched by `workers` threads, yielded in
    order; at most `workers` ranges are in memory or in flight at once."""
    bounds = iter([(a, min(a + part, size)) for a in range(start, size, part)])

    def fetch(a: int, b: int) -> bytes:
        return b"".join(_capped(read(a, b), b - a))

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zoo-range")
    try:
        pending = deque(pool.submit(fetch, *ab) for ab in itertools.islice(bounds, workers))
        while pending:
            data = pending.popleft().result()
            following = next(bounds, None)
            if following is not None:
                pending.append(pool.submit(fetch, *following))
            yield data
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _capped(blocks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """At most `limit` bytes of `blocks`, even from a server that ignores the range."""
    try:
        for block in blocks:
            if len(block) >= limit:
                yield block[:limit]
                return
            limit -= len(block)
            yield block
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()  # stop the transfer: the rest is never read


def blob_is_intact(path: Path, size: int) -> bool:
    """A cached blob is trusted when present with the recorded size: it was verified by
    sha256 before being renamed into place, so only truncation can have happened since."""
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def fetch_blob(
    cache: Cache,
    sha256: str,
    size: int,
    read_from: RangeReader,
    *,
    on_mismatch: Callable[[str], Exception],
    progress: Callable[[int], None] | None = None,
    part: int | None = None,
    workers: int | None = None,
    parallel_from: int | None = None,
) -> Path:
    """Return the cached path of blob `sha256`, downloading what is missing.

    `on_mismatch(actual_sha)` builds the error raised when the bytes do not hash to
    `sha256`; the caller knows the stub and file name the message must carry.
    `progress(n)` is called with each chunk's length (already-present bytes included).
    `part`, `workers`, `parallel_from`: range size, threads, and the size above which
    ranges go in parallel (defaults: PART, WORKERS, PARALLEL_FROM).
    """
    part = part or PART
    workers = workers or WORKERS
    parallel_from = PARALLEL_FROM if parallel_from is None else parallel_from
    target = cache.blob(sha256)
    if blob_is_intact(target, size):
        if progress:
            progress(size)
        return target
    from filelock import FileLock

    lock_path = cache.lock(sha256)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        if blob_is_intact(target, size):  # another process finished it while we waited
            if progress:
                progress(size)
            return target
        target.unlink(missing_ok=True)  # cut short (a crash before the disk caught up)
        partial = _adopt_partial(cache, sha256, size)
        digest, offset = _hash_prefix(partial)
        if progress and offset:
            progress(offset)
        if offset < size:
            if size - offset > parallel_from and workers > 1:
                blocks = _parallel_ranges(read_from, offset, size, part, workers)
            else:
                # One byte past the recorded size, no more: a swapped, longer object is
                # caught after size + 1 bytes instead of streaming into the cache in full.
                blocks = _capped(read_from(offset, size + 1), size + 1 - offset)
            _receive(partial, digest, blocks, progress)
        actual = digest.hexdigest()
        if partial.stat().st_size != size or actual != sha256:
            partial.unlink(missing_ok=True)
            raise on_mismatch(actual)
        # An interrupted transfer keeps its partial file for the next attempt to resume.
        os.replace(partial, target)
    with contextlib.suppress(OSError):
        os.chmod(target, 0o444)  # blobs are immutable: catch accidental edits early
    return target
