from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.errors import InvalidStubError, SchemaError, StubNotFoundError, VersionNotFoundError
from zoo.fsutil import sha256_file
from zoo.index.publish import publish, remove_alias, set_alias
from zoo.index.schema import Stub
from zoo.index.view import open_index
from zoo.storage.local import LocalStore

from .conftest import STUB


def test_publish_uploads_every_file_then_indexes_v1(store: LocalStore, export: Path) -> None:
    result = publish(export, store)
    entry = result.entry
    assert result.created and entry.version == 1 and str(entry.stub) == STUB
    on_disk = sorted(p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file())
    assert sorted(f.path for f in entry.files) == on_disk
    for record in entry.files:
        assert record.sha256 == sha256_file(export / record.path)
        assert store.blob_size(record.sha256) == record.size
    weights = entry.file("model.safetensors")
    # the mlp's weight matrices are half zero; biases are not pruned
    assert weights.parameters == 235_146
    assert 0.49 < weights.sparsity < 0.5  # type: ignore[operator]
    assert entry.sparsity.overall == pytest.approx(0.5, abs=1e-3)
    assert entry.recipe == "recipe.yaml" and entry.card == "README.md"
    view = open_index(store)
    assert view.generation == 1
    assert view.aliases(entry.stub) == {"latest": 1}
    assert view.entry(entry.stub, 1) == entry


def test_same_content_again_publishes_nothing(store: LocalStore, export: Path) -> None:
    first = publish(export, store)
    blobs = sorted(store.list("blobs/"))
    index_before = store.read_index()
    again = publish(export, store)
    assert not again.created and again.uploaded == 0
    assert again.entry == first.entry
    assert store.read_index() == index_before  # not even the generation moved
    assert sorted(store.list("blobs/")) == blobs


def test_changed_content_is_the_next_version_and_latest_moves(
    store: LocalStore, export: Path
) -> None:
    publish(export, store, aliases=["stable"])
    metrics = json.loads((export / "zoo.json").read_text())
    metrics["metrics"]["fashion_mnist"]["accuracy"] = 0.99
    (export / "zoo.json").write_text(json.dumps(metrics))
    second = publish(export, store)
    assert second.created and second.entry.version == 2
    stub = Stub.parse(STUB)
    view = open_index(store)
    assert view.aliases(stub) == {"latest": 2, "stable": 1}
    assert [s.version for s in view.versions(stub)] == [1, 2]
    assert view.resolve(stub).version == 2
    assert view.resolve(stub, "stable").version == 1
    assert view.resolve(stub, "v1").metrics == {"fashion_mnist": {"accuracy": 0.8}}
    # only the changed files were uploaded again: zoo.json
    assert second.uploaded == 1


def test_republish_with_an_alias_moves_it_without_a_new_version(
    store: LocalStore, export: Path
) -> None:
    publish(export, store)
    result = publish(export, store, aliases=["stable"])
    assert not result.created and result.entry.version == 1
    assert open_index(store).aliases(Stub.parse(STUB)) == {"latest": 1, "stable": 1}


def test_aliases_move_and_keep_their_history(store: LocalStore, tiny) -> None:  # type: ignore[no-untyped-def]
    for seed in range(3):
        publish(tiny(f"m{seed}", seed), store)
    stub = Stub.parse(STUB)
    set_alias(store, stub, 1, "stable")
    set_alias(store, stub, 3, "stable")
    set_alias(store, stub, 3, "stable")  # no-op: no history event, no new generation
    remove_alias(store, stub, "stable")
    view = open_index(store)
    assert view.aliases(stub) == {"latest": 3}
    stable = [(e.previous, e.version) for e in view.alias_history(stub) if e.alias == "stable"]
    assert stable == [(None, 1), (1, 3), (3, None)]
    latest = [e.version for e in view.alias_history(stub) if e.alias == "latest"]
    assert latest == [1, 2, 3]
    generations = [e.generation for e in view.alias_history(stub)]
    assert generations == sorted(generations) and view.generation == 6


def test_alias_errors_name_what_exists(store: LocalStore, tiny) -> None:  # type: ignore[no-untyped-def]
    publish(tiny("a"), store)
    stub = Stub.parse(STUB)
    with pytest.raises(VersionNotFoundError, match="v1"):
        set_alias(store, stub, 7, "stable")
    with pytest.raises(VersionNotFoundError, match="latest"):
        remove_alias(store, stub, "stable")
    with pytest.raises(InvalidStubError):
        set_alias(store, stub, 1, "v2")
    other = Stub.parse(STUB.replace("pruned50", "pruned5"))
    with pytest.raises(StubNotFoundError, match="Did you mean") as info:
        set_alias(store, other, 1, "stable")
    assert STUB in str(info.value)
    with pytest.raises(VersionNotFoundError, match="Available: v1, latest"):
        open_index(store).resolve(stub, "v9")
    assert open_index(store).generation == 1


def test_query_by_facets_with_wildcards(store: LocalStore, tiny) -> None:  # type: ignore[no-untyped-def]
    stubs = [
        "zoo:cv/classification/mlp/fashion_mnist/pruned50",
        "zoo:cv/classification/cnn_small/fashion_mnist/pruned90",
        "zoo:nlp/text_classification/minilm/rotten_tomatoes/pruned50",
    ]
    for i, text in enumerate(stubs):
        publish(tiny(f"q{i}", i, stub=text), store)
    publish(tiny("q0b", 10, stub=stubs[0]), store)
    view = open_index(store)
    assert [str(s.stub) for s in view.query(domain="cv")] == sorted(stubs[:2])
    assert [s.ref for s in view.query(dataset="fashion_mnist", architecture="mlp")] == [
        stubs[0] + "@v2"
    ]
    assert len(view.query(domain="cv", latest_only=False)) == 3
    assert [str(s.stub) for s in view.query(sparse_tag="pruned5*")] == sorted([stubs[0], stubs[2]])
    assert view.query(domain="audio") == []
    with pytest.raises(SchemaError, match="unknown facet"):
        view.query(colour="red")


def test_stub_override_and_reading_an_unknown_store(tmp_path: Path, export: Path) -> None:
    other = "zoo:cv/classification/mlp/fashion_mnist/other"
    result = publish(export, tmp_path / "s", stub=other)
    assert str(result.entry.stub) == other
    from zoo.errors import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        open_index(tmp_path / "nowhere")  # type: ignore[arg-type]
