"""`zoo search --sort latency --runtime R`: latency as the benchmark recorded it on R."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.client.conftest import CliResult
from tests.demo_models import DemoModel
from zoo.client import api
from zoo.errors import UnknownRuntimeError
from zoo.evaluation.schema import (
    BatchFigures,
    BenchmarkReport,
    ModelFigures,
    fastest_runtime,
    runtimes_of,
)

EAGER_FAST = DemoModel(
    "zoo:cv/classification/mlp/fashion_mnist/eager_fast",
    arch_kwargs={"hidden": [16]},
    latency_ms=0.5,
    runtime_latency_ms={"onnxruntime": 0.9},
)
ORT_FAST = DemoModel(
    "zoo:cv/classification/mlp/fashion_mnist/ort_fast",
    arch_kwargs={"hidden": [16]},
    latency_ms=1.0,
    runtime_latency_ms={"onnxruntime": 0.2, "openvino": 0.3},
    seed=1,
)
UNTIMED = DemoModel(
    "zoo:cv/classification/mlp/fashion_mnist/untimed", arch_kwargs={"hidden": [16]}, seed=2
)


def test_sort_by_latency_reads_the_named_runtime(
    small_store: Callable[..., str], cli: Callable[..., CliResult]
) -> None:
    store = small_store(EAGER_FAST, ORT_FAST, UNTIMED)
    torch_order = [h.summary.stub.sparse_tag for h in api.search(sort="latency", registry=store)]
    assert torch_order == ["eager_fast", "ort_fast", "untimed"]
    ort = api.search(sort="latency", runtime="onnxruntime", registry=store)
    assert [h.summary.stub.sparse_tag for h in ort] == ["ort_fast", "eager_fast", "untimed"]
    assert [h.latency_ms for h in ort] == [0.2, 0.9, None]
    code, out, _ = cli(
        "search", "--sort", "latency", "--runtime", "onnxruntime", "--registry", store
    )
    assert code == 0 and out.index("ort_fast") < out.index("eager_fast") < out.index("untimed")


def test_an_unknown_runtime_is_a_usage_error(
    small_store: Callable[..., str], cli: Callable[..., CliResult]
) -> None:
    store = small_store()
    with pytest.raises(UnknownRuntimeError, match=r"'onnx'.*Did you mean 'onnxruntime'"):
        api.search(sort="latency", runtime="onnx", registry=store)
    code, _, err = cli("search", "--runtime", "tensorrt", "--registry", store)
    assert code == 2 and "Installed here: onnxruntime, openvino, torch" in err


def test_runtime_figures_round_trip_and_name_the_fastest() -> None:
    def timed(ms: float) -> ModelFigures:
        return ModelFigures(batches={1: BatchFigures(p50_ms=ms, throughput=1000 / ms)})

    report = BenchmarkReport(
        "x86_64-1threads-cpu",
        timed(2.0),
        timed(2.0),
        runtimes={"onnxruntime": timed(0.5), "openvino": timed(0.8)},
    )
    assert BenchmarkReport.from_dict(report.to_dict()) == report
    index = report.index_figures()
    assert sorted(index) == [
        "x86_64-1threads-cpu",
        "x86_64-1threads-cpu/onnxruntime",
        "x86_64-1threads-cpu/openvino",
    ]
    figures = runtimes_of(index)
    assert {k: v.latency_ms for k, v in figures.items()} == {
        "torch": 2.0,
        "onnxruntime": 0.5,
        "openvino": 0.8,
    }
    assert fastest_runtime(figures, 1) == "onnxruntime"
    assert fastest_runtime(figures, 64) is None
