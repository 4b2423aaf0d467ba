"""The benchmark schema: what the timing code writes is what every reader reads back."""

from __future__ import annotations

import json

import pytest
import torch

from zoo.client.api import latency_ms
from zoo.errors import SchemaError
from zoo.evaluation.schema import BenchmarkReport, ModelFigures, figures_of
from zoo.evaluation.speed import measure_side_by_side
from zoo.models import get_model


@pytest.fixture(scope="module")
def report() -> BenchmarkReport:
    torch.manual_seed(0)
    model = get_model("cnn_small", channels=[8, 16])
    timings = measure_side_by_side(
        {"model": model, "baseline": get_model("cnn_small", channels=[8, 16])},
        lambda n: {"x": torch.randn(n, 1, 28, 28)},
        baseline="baseline",
        batch_sizes=(1, 8),
        rounds=5,
        warmup=1,
        budget_s=0.2,
    )
    return BenchmarkReport(
        machine="x86_64-2threads-cpu",
        model=ModelFigures(batches=timings["model"], size_bytes=1000, size_ratio=2.0),
        baseline=ModelFigures(batches=timings["baseline"], size_bytes=2000),
    )


def test_the_stage_json_reads_back_equal(report: BenchmarkReport) -> None:
    text = json.dumps(report.to_dict())
    assert BenchmarkReport.from_dict(json.loads(text)) == report


def test_index_figures_give_search_and_the_catalog_their_latency(report: BenchmarkReport) -> None:
    kept = json.loads(json.dumps(report.index_figures()))  # as an index entry stores it
    figures = figures_of(kept)
    assert figures is not None
    assert figures.latency_ms == report.model.batches[1].p50_ms
    assert latency_ms(kept) == report.model.batches[1].p50_ms
    assert figures.batches[8].control == report.model.batches[8].control
    assert figures.batches[8].spread == report.model.batches[8].spread
    assert figures.size_ratio == 2.0


def test_unknown_or_malformed_figures_are_refused_by_name() -> None:
    with pytest.raises(SchemaError, match="unknown benchmark figure 'latency_ms'"):
        ModelFigures.parse({"latency_ms": 1.0})
    with pytest.raises(SchemaError, match="b1_p50_ms: expected a number, got 'fast'"):
        ModelFigures.parse({"b1_p50_ms": "fast"})
    with pytest.raises(SchemaError, match="b1_noisy: expected true or false"):
        ModelFigures.parse({"b1_p50_ms": 1.0, "b1_noisy": 1})
    with pytest.raises(SchemaError, match="batch 4: missing p50_ms"):
        ModelFigures.parse({"b4_speedup": 1.0})
    with pytest.raises(SchemaError, match="not a benchmark report: missing 'baseline'"):
        BenchmarkReport.from_dict({"machine": "m", "model": {}})
