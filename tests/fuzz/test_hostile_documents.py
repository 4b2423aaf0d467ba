"""Fuzz: mutated index documents, entries, SHA256SUMS files and safetensors headers.

Every case starts from a real published store (a real torch model, published by
`zoo.index.publish`), mutates one kind of document the way a damaged or hostile store
could, and drives the CLI (publish, search, show, download, validate, verify) and
`zoo.load` in-process. What must hold, for every case:

- no traceback: anything but a `ZooError` escaping `zoo.cli.main` fails the test;
- every failure is a project error with a non-zero exit;
- nothing is created, changed or deleted outside the case's cache, store and temporary
  folder: a sentinel tree beside them (whose paths the hostile values aim at) is compared
  byte for byte, and the case folder may hold nothing else.

About 2,000 cases run by default (well under a minute on 2 cores); `make fuzz` sets
ZOO_FUZZ_SCALE=10.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.demo_models import DemoModel, make_export
from tests.hostile import edit_record, rewrite_entry, swap_root
from zoo.errors import ZooError
from zoo.index.publish import publish
from zoo.storage.local import LocalStore

STUB = "zoo:cv/classification/mlp/fashion_mnist/pruned50"
REF = STUB + "@v1"
SCALE = float(os.environ.get("ZOO_FUZZ_SCALE", "1"))
MODEL = DemoModel(STUB, arch_kwargs={"hidden": [8]}, sparsity=0.5)


def fuzz(examples: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,  # no example database: a failure prints the seed that replays it
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# -- the world of one case ----------------------------------------------------------------


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(a store holding MODEL, its export folder), built once and copied for each case.

    In memory (/dev/shm) where there is one: a case creates and removes about twenty
    folders, which costs more than the case itself on a busy disk."""
    shm = Path("/dev/shm")
    memory = shm.is_dir() and os.access(shm, os.W_OK)
    base = Path(tempfile.mkdtemp(prefix="zoo-fuzz-", dir=shm)) if memory else None
    base = base or tmp_path_factory.mktemp("published")
    try:
        export = make_export(base / "export", MODEL)
        publish(export, base / "store")
        yield base / "store", export
    finally:
        if memory:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _one_parser() -> Iterator[None]:
    """Build the `zoo` parser once: it costs half a case (every command family's
    arguments), and `main` runs unchanged around it."""
    import functools

    import zoo.cli

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zoo.cli, "build_parser", functools.cache(zoo.cli.build_parser))
        yield


class Case:
    """One case's folder: store/, cache/, tmp/ (what the zoo may touch) and sentinel/."""

    def __init__(self, root: Path, store: Path) -> None:
        self.root = root
        self.store_dir = root / "store"
        shutil.copytree(store, self.store_dir)
        self.store = LocalStore(self.store_dir)
        self.cache = root / "cache"
        self.tmp = root / "tmp"
        self.tmp.mkdir()
        self.sentinel = root / "sentinel"
        (self.sentinel / "deep").mkdir(parents=True)
        (self.sentinel / "victim").write_bytes(b"precious")
        (self.sentinel / "deep" / ("a" * 64)).write_bytes(b"looks like a blob")
        self._before = self.snapshot()

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {
            p.relative_to(self.sentinel).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(self.sentinel.rglob("*"))
            if p.is_file() or p.is_symlink()
        }

    def hostile_paths(self) -> list[str]:
        """Values that name the sentinel from where the zoo builds paths."""
        victim = self.sentinel / "victim"
        return [
            str(victim),
            os.path.relpath(victim, self.cache / "blobs"),
            os.path.relpath(victim, self.store_dir / "blobs" / "sha256" / "aa"),
            "../sentinel/victim",
            "../../sentinel/victim",
            "..\\..\\sentinel\\victim",
            str(self.sentinel / "deep" / ("a" * 64)),
        ]

    def check_untouched(self) -> None:
        assert self.snapshot() == self._before, "the sentinel tree changed"
        names = set(os.listdir(self.root))
        assert names <= {"store", "cache", "tmp", "sentinel"}, f"appeared beside: {names}"


@contextlib.contextmanager
def case(base: Path, store: Path) -> Iterator[Case]:
    root = Path(tempfile.mkdtemp(dir=base))
    try:
        world = Case(root, store)
        yield world
        world.check_untouched()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def export_case(published: tuple[Path, Path]) -> Iterator[tuple[Case, Path]]:
    """A case with a copy of the export folder in its tmp/, to damage."""
    store, export = published
    with case(store.parent, store) as world:
        folder = world.tmp / "export"
        shutil.copytree(export, folder)
        yield world, folder


def run(world: Case, *argv: str) -> int:
    """`zoo ARGV` in-process; only a ZooError may end it, as a one-line error."""
    import zoo.cli

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = zoo.cli.main(list(argv))
    if code != 0:
        assert "zoo: error:" in err.getvalue() and "Traceback" not in err.getvalue(), err
    return code


COMMANDS = ("search", "show", "download", "download-to", "validate", "load", "verify", "versions")


def drive(world: Case, command: str) -> None:
    registry = ["--registry", str(world.store_dir), "--cache-dir", str(world.cache)]
    if command == "load":
        import zoo

        with contextlib.suppress(ZooError):
            zoo.load(REF, registry=str(world.store_dir), cache_dir=world.cache, progress=False)
        return
    argv = {
        "search": ["search", "--all-versions", "--sort", "size"],
        "show": ["show", STUB],
        "download": ["download", STUB, "--quiet"],
        "download-to": ["download", REF, "--quiet", "--to", str(world.tmp / "out")],
        "validate": ["validate", REF],
        "versions": ["versions", STUB, "--store", str(world.store_dir)],
        "verify": ["index", "verify", "--store", str(world.store_dir)],
    }[command]
    run(world, *(argv if command in ("versions", "verify") else argv + registry))


# -- what a hostile value can be ----------------------------------------------------------


def values(world: Case) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.sampled_from(world.hostile_paths()),
        st.sampled_from(["", "A" * 64, "a" * 63, "g" * 64, "a" * 64 + "\n", "v0", "v-1", "."]),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.text(max_size=12),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=4,
    )


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON document (dict keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += paths(value, (*prefix, index))
    return out


def mutate(data: st.DataObject, doc: Any, world: Case, count: int = 2) -> Any:
    """Replace or delete up to `count` locations of `doc` (in place; returns it)."""
    for _ in range(data.draw(st.integers(1, count))):
        where = paths(doc)
        if not where:
            return data.draw(values(world))
        path = data.draw(st.sampled_from(where))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(values(world))
    return doc


# -- the fuzz tests -------------------------------------------------------------------------


@fuzz(800)
@given(data=st.data())
def test_mutated_entries(data: st.DataObject, published: tuple[Path, Path]) -> None:
    store, _ = published
    with case(store.parent, store) as world:
        rewrite_entry(world.store, REF, lambda entry: mutate(data, entry, world))
        drive(world, data.draw(st.sampled_from(COMMANDS)))


@fuzz(700)
@given(data=st.data())
def test_mutated_index_documents(data: st.DataObject, published: tuple[Path, Path]) -> None:
    store, _ = published
    with case(store.parent, store) as world:
        if data.draw(st.booleans()):
            swap_root(world.store, lambda root: mutate(data, root, world, count=1))
        else:
            edit_record(world.store, STUB, lambda record: mutate(data, record, world))
        drive(world, data.draw(st.sampled_from(COMMANDS)))


def _sums_lines(world: Case) -> st.SearchStrategy[str]:
    digest = st.one_of(st.just("0" * 64), st.sampled_from(["", "A" * 64, "x"]), st.text(max_size=8))
    name = st.one_of(
        st.sampled_from([*world.hostile_paths(), "config.json", "model.safetensors"]),
        st.text(max_size=16),
    )
    sep = st.sampled_from(["  ", " ", "\t", "  *"])
    return st.builds(lambda d, s, n: f"{d}{s}{n}", digest, sep, name)


@fuzz(250)
@given(data=st.data())
def test_mutated_sha256sums(data: st.DataObject, published: tuple[Path, Path]) -> None:
    from zoo.compress.load import verify_folder

    with export_case(published) as (world, folder):
        lines = data.draw(st.lists(_sums_lines(world), max_size=4))
        (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
        with contextlib.suppress(ZooError):
            verify_folder(folder, {})


def _header_of(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


@fuzz(250)
@given(data=st.data())
def test_mutated_safetensors_headers(data: st.DataObject, published: tuple[Path, Path]) -> None:
    with export_case(published) as (world, folder):
        weights = folder / "model.safetensors"
        header, body = _header_of(weights)
        header = mutate(data, header, world)
        raw = json.dumps(header).encode()
        weights.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
        code = run(world, "publish", str(folder), "--store", str(world.tmp / "store2"))
        if code == 0:  # accepted: then every client must be able to use it
            registry = ["--registry", str(world.tmp / "store2"), "--cache-dir", str(world.cache)]
            run(world, "validate", REF, *registry)
        else:  # refused: served anyway by a hostile store, the client must cope
            weights_sha = _serve(world, weights)
            assert weights_sha
            drive(world, data.draw(st.sampled_from(["validate", "load", "verify"])))


def _serve(world: Case, weights: Path) -> str:
    from zoo.fsutil import sha256_file

    sha = sha256_file(weights)
    world.store.put_blob(sha, weights)

    def edit(entry: dict[str, Any]) -> None:
        for record in entry["files"]:
            if record["path"] == "model.safetensors":
                record.update(sha256=sha, size=weights.stat().st_size)

    rewrite_entry(world.store, REF, edit)
    return sha


def test_the_sentinel_check_can_fail(published: tuple[Path, Path]) -> None:
    """The watcher is real: a write beside the store is caught."""
    store, _ = published
    with pytest.raises(AssertionError, match="sentinel tree changed"):  # noqa: SIM117
        with case(store.parent, store) as world:
            (world.sentinel / "victim").write_bytes(b"changed")
    with pytest.raises(AssertionError, match="appeared beside"):  # noqa: SIM117
        with case(store.parent, store) as world:
            (world.root / "stray.lock").touch()
