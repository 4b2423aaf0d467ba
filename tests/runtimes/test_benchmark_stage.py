"""The benchmark stage with `bench.runtimes`: the entry timed on ONNX Runtime in the same
rounds, recorded in its report and in the index figures under `<machine>/onnxruntime`."""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.evaluation.schema import BenchmarkReport, figures_on
from zoo.models import get_model
from zoo.models.checkpoint import save_checkpoint
from zoo.pipeline.entries import BenchSettings, EntryConfig
from zoo.pipeline.measure import machine_name, run_benchmark


def test_the_stage_times_the_entry_on_each_runtime_asked(
    prepared_data: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    folder = save_checkpoint(get_model("mlp", in_features=64, hidden=[16]), tmp_path / "m")
    entry = EntryConfig(
        key="mlp_digits",
        flow="dense",
        parent="",
        data="digits",
        stub="zoo:cv/classification/mlp/digits/base",
        baseline="mlp_digits",
        recipe="",
    )
    bench = BenchSettings(
        batch_sizes=[1, 8], rounds=5, budget_s=0.2, warmup=1, runtimes=["onnxruntime"]
    )
    report = run_benchmark(entry, bench, prepared_data, folder, folder)
    assert set(report.runtimes) == {"onnxruntime"}
    assert set(report.runtimes["onnxruntime"].batches) == {1, 8}
    assert BenchmarkReport.from_dict(report.to_dict()) == report
    index = report.index_figures()
    assert set(index) == {machine_name(), f"{machine_name()}/onnxruntime"}
    on_ort = figures_on(index, "onnxruntime")
    assert on_ort is not None and on_ort.latency_ms == report.runtimes["onnxruntime"].latency_ms
