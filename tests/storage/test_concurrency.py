"""Concurrent publishers on one store (local folder and SeaweedFS)."""

from __future__ import annotations

from pathlib import Path

from zoo.index.export import write_tiny_export
from zoo.index.schema import Stub
from zoo.index.verify import verify_index
from zoo.index.view import open_index
from zoo.storage.base import Store

from ._procs import FORK, check_consistency, publish_all, spec_of


def _run(store: Store, groups: list[list[Path]]) -> None:
    start = FORK.Event()
    procs = [FORK.Process(target=publish_all, args=(spec_of(store), g, start)) for g in groups]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_two_processes_publish_twenty_models_each(any_store: Store, tmp_path: Path) -> None:
    groups = [
        [
            write_tiny_export(
                tmp_path / f"p{p}-m{i}",
                stub=f"zoo:cv/classification/tiny/synthetic/p{p}_m{i}",
                seed=100 * p + i,
                size=16,
            )
            for i in range(20)
        ]
        for p in range(2)
    ]
    _run(any_store, groups)
    view = open_index(any_store)
    assert check_consistency(view) == 40
    assert len(view.stubs()) == 40
    assert view.generation == 40  # every publish moved the index exactly once
    assert verify_index(view).ok


def test_publishers_racing_on_one_stub_get_consecutive_versions(
    any_store: Store, tmp_path: Path
) -> None:
    stub = "zoo:cv/classification/tiny/synthetic/raced"
    groups = [
        [
            write_tiny_export(tmp_path / f"r{p}-{i}", stub=stub, seed=10 * p + i, size=16)
            for i in range(6)
        ]
        for p in range(2)
    ]
    _run(any_store, groups)
    view = open_index(any_store)
    versions = view.versions(Stub.parse(stub))
    assert [s.version for s in versions] == list(range(1, 13))
    assert len({s.content_hash for s in versions}) == 12  # each publish got its own version
    assert view.aliases(Stub.parse(stub)) == {"latest": 12}
    assert check_consistency(view) == 12
