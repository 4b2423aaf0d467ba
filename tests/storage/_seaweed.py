"""The SeaweedFS server as a test fixture: started for a block, always stopped after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from zoo.storage.seaweed import SeaweedServer, start, stop


@contextmanager
def seaweedfs(workdir: str | os.PathLike[str]) -> Iterator[SeaweedServer]:
    """Run a SeaweedFS server for the duration of the block; always stopped afterwards."""
    server = start(workdir)
    try:
        yield server
    finally:
        stop(server)
