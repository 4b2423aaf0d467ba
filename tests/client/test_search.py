"""Faceted search, conditions, sorting and fronts: on hand-made summaries and on a registry."""

from __future__ import annotations

import math

import pytest

from zoo.client import api
from zoo.client.search import Query, SearchIndex, Threshold
from zoo.errors import InvalidQueryError
from zoo.index.schema import EntrySummary, Stub


def summary(
    stub: str,
    version: int = 1,
    *,
    size: int = 1000,
    sparsity: float = 0.0,
    quant: str | None = None,
    metrics: dict | None = None,
) -> EntrySummary:
    parsed = Stub.parse(stub)
    return EntrySummary(
        stub=parsed,
        version=version,
        entry_sha256="0" * 64,
        content_hash=f"{stub}{version}",
        size=size,
        parameters=size // 4,
        sparsity=sparsity,
        quantization=quant,
        metrics=metrics if metrics is not None else {parsed.dataset: {"accuracy": 0.8}},
        created_at=f"2026-01-{version:02d}T00:00:00Z",
    )


MNIST = "zoo:cv/classification/mlp/mnist/"


def acc(dataset: str, value: float) -> dict:
    return {dataset: {"accuracy": value}}


@pytest.fixture
def index() -> SearchIndex:
    return SearchIndex(
        [
            summary(MNIST + "base", 1, size=900, metrics=acc("mnist", 0.97)),
            summary(MNIST + "base", 2, size=900, metrics=acc("mnist", 0.98)),
            summary(MNIST + "pruned90", size=300, sparsity=0.9, metrics=acc("mnist", 0.96)),
            summary(
                MNIST + "pruned90_quant",
                size=100,
                sparsity=0.9,
                quant="int8",
                metrics=acc("mnist", 0.95),
            ),
            summary(
                "zoo:cv/classification/cnn_small/fashion_mnist/base",
                size=200,
                metrics=acc("fashion_mnist", 0.91),
            ),
            summary(
                "zoo:nlp/text_classification/minilm/rotten_tomatoes/base", size=90_000, metrics={}
            ),
        ]
    )


def refs(hits: list) -> list[str]:
    return [h.ref for h in hits]


def test_facets_wildcards_and_latest_only(index: SearchIndex) -> None:
    hits = index.search(Query(facets={"dataset": "mnist"}))
    assert sorted(refs(hits)) == [
        "zoo:cv/classification/mlp/mnist/base@v2",
        "zoo:cv/classification/mlp/mnist/pruned90@v1",
        "zoo:cv/classification/mlp/mnist/pruned90_quant@v1",
    ]
    all_versions = index.search(Query(facets={"dataset": "mnist"}, latest_only=False))
    assert len(all_versions) == 4
    tagged = index.search(Query(facets={"sparse_tag": "pruned*"}))
    assert {h.summary.stub.sparse_tag for h in tagged} == {"pruned90", "pruned90_quant"}
    assert refs(index.search(Query(facets={"domain": "nlp"}))) == [
        "zoo:nlp/text_classification/minilm/rotten_tomatoes/base@v1"
    ]
    assert index.search(Query(facets={"architecture": "resnet*"})) == []


def test_quantized_sparsity_text_and_thresholds(index: SearchIndex) -> None:
    assert refs(index.search(Query(quantized=True))) == [
        "zoo:cv/classification/mlp/mnist/pruned90_quant@v1"
    ]
    assert len(index.search(Query(quantized=False))) == 4
    assert len(index.search(Query(min_sparsity=0.9))) == 2
    assert len(index.search(Query(max_sparsity=0.0))) == 3
    assert refs(index.search(Query(text="cnn fashion"))) == [
        "zoo:cv/classification/cnn_small/fashion_mnist/base@v1"
    ]
    over = index.search(Query(where=[Threshold.parse("accuracy>=0.96")]))
    assert sorted(h.metric for h in over) == [0.96, 0.98]
    # A model without the metric never satisfies a condition on it.
    assert all(
        h.summary.stub.domain == "cv"
        for h in index.search(Query(where=[Threshold.parse("accuracy<1")]))
    )
    named = index.search(Query(where=[Threshold.parse("accuracy@fashion_mnist>0.9")]))
    assert refs(named) == ["zoo:cv/classification/cnn_small/fashion_mnist/base@v1"]


def test_sorting_directions_and_missing_values_last(index: SearchIndex) -> None:
    by_size = index.search(Query(sort="size"))
    sizes = [h.summary.size for h in by_size]
    assert sizes == sorted(sizes)
    by_acc = index.search(Query(sort="accuracy"))  # metrics sort best first
    values = [h.metric for h in by_acc]
    assert values[:-1] == sorted(values[:-1], reverse=True) and values[-1] is None
    ascending = index.search(Query(sort="accuracy", descending=False))
    assert [h.metric for h in ascending][-1] is None  # still last
    assert ascending[0].metric == 0.91
    assert len(index.search(Query(sort="size", limit=2))) == 2


def test_pareto_front_by_size(index: SearchIndex) -> None:
    front = index.search(Query(facets={"dataset": "mnist"}, pareto="size"))
    assert refs(front) == [
        "zoo:cv/classification/mlp/mnist/pruned90_quant@v1",
        "zoo:cv/classification/mlp/mnist/pruned90@v1",
        "zoo:cv/classification/mlp/mnist/base@v2",
    ]
    # "The smallest model with accuracy >= 0.96 on mnist."
    smallest = index.search(
        Query(
            facets={"dataset": "mnist"},
            where=[Threshold.parse("accuracy>=0.96")],
            sort="size",
            limit=1,
        )
    )
    assert refs(smallest) == ["zoo:cv/classification/mlp/mnist/pruned90@v1"]


def test_latency_comes_from_a_lookup_and_sorts(index: SearchIndex) -> None:
    latency = {"base": 2.0, "pruned90": 1.0, "pruned90_quant": 0.5}
    hits = index.search(
        Query(facets={"dataset": "mnist"}, sort="latency"),
        latency_of=lambda s: latency[s.stub.sparse_tag],
    )
    assert [h.latency_ms for h in hits] == [0.5, 1.0, 2.0]


def test_facet_counts(index: SearchIndex) -> None:
    assert index.facet_counts("architecture") == {"cnn_small": 1, "minilm": 1, "mlp": 4}
    assert not math.isnan(index.metric_column("accuracy")[0])


@pytest.mark.parametrize("bad", ["accuracy>>0.9", "accuracy", ">=0.9", "accuracy>=high"])
def test_bad_conditions_are_clear_errors(bad: str) -> None:
    with pytest.raises(InvalidQueryError, match=r"accuracy>=0\.9|not a number"):
        Threshold.parse(bad)


def test_unknown_facet_and_pareto_axis() -> None:
    with pytest.raises(InvalidQueryError, match="unknown facet"):
        Query(facets={"colour": "red"})
    with pytest.raises(InvalidQueryError, match="pareto"):
        Query(pareto="weight")


def test_api_search_on_a_published_registry(demo_store: str) -> None:
    hits = api.search(
        registry=demo_store, dataset="fashion_mnist", where=["accuracy>=0.87"], sort="size"
    )
    assert hits and all(h.metric is not None and h.metric >= 0.87 for h in hits)
    assert [h.summary.size for h in hits] == sorted(h.summary.size for h in hits)
    front = api.search(registry=demo_store, dataset="fashion_mnist", pareto="latency")
    latencies = [h.latency_ms for h in front]
    assert latencies == sorted(latencies) and None not in latencies
    accuracies = [h.metric for h in front]
    assert accuracies == sorted(accuracies)
    assert api.search(registry=demo_store, quantized=True)[0].summary.quantization == "int8"


def test_text_search_within_and_across_facets(index: SearchIndex) -> None:
    assert len(index.search(Query(text="zoo"))) == 5
    assert len(index.search(Query(text="quant"))) == 1
    across = index.search(Query(text="mlp/mnist pruned"))
    assert sorted(h.summary.stub.sparse_tag for h in across) == ["pruned90", "pruned90_quant"]
    assert index.search(Query(text="mnist/mlp")) == []
