"""Serve a built catalog on localhost, or upload it next to the store's blobs."""

from __future__ import annotations

import functools
import http.server
import os
from pathlib import Path

from zoo.errors import StoreConflictError
from zoo.storage.base import Store

SITE_PREFIX = "catalog"


def make_server(
    folder: str | os.PathLike[str], port: int = 8000
) -> http.server.ThreadingHTTPServer:
    """An HTTP server for `folder` on 127.0.0.1 only: the catalog is for this machine's
    user; exposing it wider is a deployment choice, not a default. Port 0 picks a free one."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def upload_site(folder: str | os.PathLike[str], store: Store, prefix: str = SITE_PREFIX) -> int:
    """Copy every file of the built site to `<store>/<prefix>/...`; returns files written.

    Each page is replaced by compare-and-swap on its etag, so two publishers racing leave
    one complete version of each page, and unchanged pages are not rewritten.
    """
    root = Path(folder)
    written = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(root).as_posix()}"
        data = path.read_bytes()
        for _attempt in range(5):
            current = store.get(key)
            if current is not None and current.data == data:
                break
            try:
                store.put_if_match(key, data, current.etag if current else None)
                written += 1
                break
            except StoreConflictError:
                continue
    return written
