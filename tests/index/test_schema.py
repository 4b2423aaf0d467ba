from __future__ import annotations

import json

import pytest

from zoo.errors import InvalidStubError, SchemaError
from zoo.index.schema import (
    Entry,
    FileRecord,
    Lineage,
    QuantizationFacts,
    SparsityFacts,
    Stub,
    check_alias,
    content_hash,
    parse_ref,
    parse_version,
)

TEXT = "zoo:cv/classification/cnn_small/fashion_mnist/pruned90_quant"


def test_stub_round_trip_and_facets() -> None:
    stub, ref = parse_ref(TEXT + "@v2")
    assert ref == "v2" and parse_version(ref) == 2
    assert str(stub) == TEXT
    assert stub.facets() == {
        "domain": "cv",
        "task": "classification",
        "architecture": "cnn_small",
        "dataset": "fashion_mnist",
        "sparse_tag": "pruned90_quant",
    }
    assert stub.at(2) == TEXT + "@v2"
    assert stub.at("stable") == TEXT + "@stable"
    assert Stub.parse(TEXT.removeprefix("zoo:")) == stub
    assert parse_ref(TEXT + "@stable") == (stub, "stable")
    assert parse_version("stable") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "zoo:cv/classification",
        "zoo:cv/classification/cnn/fashion_mnist/pruned/extra",
        "zoo:CV/classification/cnn/fashion_mnist/pruned",
        "zoo:cv//cnn/fashion_mnist/pruned",
        "zoo:cv/classification/cnn/fashion mnist/pruned",
        "zoo:cv/classification/cnn/../pruned",
        TEXT + "@v0",
        TEXT + "@",
        TEXT + "@V2",
        TEXT + "@v2@v3",
    ],
)
def test_invalid_stubs_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidStubError) as info:
        parse_ref(text)
    assert "zoo:<domain>/<task>/<architecture>/<dataset>/<sparse_tag>" in str(info.value)
    assert info.value.exit_code == 2


def test_stub_parse_refuses_a_version() -> None:
    with pytest.raises(InvalidStubError, match="without '@version'"):
        Stub.parse(TEXT + "@v1")


@pytest.mark.parametrize("name", ["v1", "v12", "V1", "1abc", "a b", ""])
def test_alias_names_that_look_like_versions_or_are_malformed(name: str) -> None:
    with pytest.raises(InvalidStubError):
        check_alias(name)


def _entry() -> Entry:
    files = [
        FileRecord("model.safetensors", 10, "a" * 64, 100, 50),
        FileRecord("README.md", 3, "b" * 64),
    ]
    facts = dict(
        metrics={"fashion_mnist": {"accuracy": 0.9}},
        benchmarks={"cpu": {"latency_ms": 1.5, "batch_size": 1}},
        sparsity=SparsityFacts(0.5, 100, 50, per_layer={"fc.weight": 0.5}),
        quantization=QuantizationFacts("int8", 8, 8, "per_channel", True, "qat", ["fc"]),
        lineage=Lineage("zoo:cv/a/b/c/d@v1", "dh", "rh", "abc", False, {"train": "x"}),
    )
    return Entry(
        stub=Stub.parse(TEXT),
        version=3,
        files=files,
        content_hash=content_hash(files, **facts),  # type: ignore[arg-type]
        recipe=None,
        card="README.md",
        created_at="2026-01-01T00:00:00Z",
        **facts,  # type: ignore[arg-type]
    )


def test_entry_json_round_trip_is_exact() -> None:
    entry = _entry()
    again = Entry.from_json(entry.to_json())
    assert again == entry
    assert again.ref == TEXT + "@v3"
    assert again.size == 13
    assert again.parameters == 100
    assert again.file("model.safetensors").sparsity == 0.5


def test_entry_from_json_names_missing_fields_and_bad_format() -> None:
    data = json.loads(_entry().to_json())
    del data["files"]
    with pytest.raises(SchemaError, match="files"):
        Entry.from_dict(data)
    data = json.loads(_entry().to_json())
    data["format"] = "zoo-entry/99"
    with pytest.raises(SchemaError, match="unsupported format"):
        Entry.from_dict(data)


def test_content_hash_follows_content_not_the_registering_commit() -> None:
    entry = _entry()
    from dataclasses import replace

    same = content_hash(
        entry.files,
        entry.metrics,
        entry.benchmarks,
        entry.sparsity,
        entry.quantization,
        replace(entry.lineage, git_commit="another", git_dirty=True),
    )
    assert same == entry.content_hash
    changed = content_hash(
        entry.files,
        {"fashion_mnist": {"accuracy": 0.91}},
        entry.benchmarks,
        entry.sparsity,
        entry.quantization,
        entry.lineage,
    )
    assert changed != entry.content_hash
