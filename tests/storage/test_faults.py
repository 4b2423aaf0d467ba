"""Publishers killed with SIGKILL at random points leave a valid store; a retry completes."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from zoo.index.export import write_tiny_export
from zoo.index.publish import publish
from zoo.index.schema import Stub
from zoo.index.verify import verify_index
from zoo.index.view import open_index
from zoo.storage.base import Store

from ._procs import FORK, check_consistency, publish_all, spec_of

STUB = "zoo:cv/classification/tiny/synthetic/killed"


@pytest.mark.parametrize("kills", [20])
def test_sigkill_at_random_points(any_store: Store, tmp_path: Path, kills: int) -> None:
    rng = random.Random(1234)
    exports = [
        write_tiny_export(tmp_path / f"k{i}", stub=STUB, seed=i, size=16) for i in range(kills)
    ]
    # How long one publish takes here, so the kill lands anywhere inside one.
    started = time.perf_counter()
    publish(write_tiny_export(tmp_path / "probe", stub=STUB, seed=999, size=16), any_store)
    span = time.perf_counter() - started
    spec = spec_of(any_store)
    interrupted = 0
    for export in exports:
        child = FORK.Process(target=publish_all, args=(spec, [export]))
        child.start()
        time.sleep(rng.uniform(0, span * 1.2))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            interrupted += 1
        child.join(60)
        view = open_index(any_store)  # the store is readable and consistent after each kill
        check_consistency(view)
        retry = publish(export, any_store)  # and the publish can be completed
        assert retry.entry.content_hash in {
            s.content_hash for s in open_index(any_store).versions(Stub.parse(STUB))
        }
    print(f"{interrupted} of {kills} publishers killed mid-publish (span {span * 1000:.0f} ms)")
    assert interrupted >= kills // 3, f"only {interrupted} kills landed inside a publish"
    view = open_index(any_store)
    versions = view.versions(Stub.parse(STUB))
    assert [s.version for s in versions] == list(range(1, kills + 2))  # no gaps, no duplicates
    assert len({s.content_hash for s in versions}) == kills + 1
    assert verify_index(view).ok
