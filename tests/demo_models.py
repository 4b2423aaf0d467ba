"""Small but real zoos for tests, benchmarks and screenshots.

`make_export` writes an export folder (the contract in zoo/index/export.py) from a real
torch model: dense safetensors weights with a fraction zeroed, config.json, sample
inputs/outputs, recipe, model card and zoo.json. `populate` publishes a handful of them
(several architectures and sizes, a lineage chain, two versions of one stub) into a store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zoo.index.schema import Scalar


@dataclass(frozen=True)
class DemoModel:
    stub: str
    arch: str = "mlp"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    sparsity: float = 0.0
    accuracy: float = 0.85
    latency_ms: float = 1.0
    noisy: bool = False  # the benchmark's control strayed: ratios marked noisy
    parent: str | None = None  # a stub alone is pinned to its latest version on publish
    quantization: str | None = None
    seed: int = 0
    # Batch-1 latency on other runtimes ("onnxruntime": 0.2), as the benchmark records it.
    runtime_latency_ms: dict[str, float] = field(default_factory=dict)


def make_export(folder: str | os.PathLike[str], model: DemoModel) -> Path:
    import torch
    from safetensors.torch import save_file

    from zoo.compress.card import render_card
    from zoo.evaluation.counting import count_nonzero, count_parameters
    from zoo.evaluation.schema import BatchFigures, BenchmarkReport, ModelFigures
    from zoo.index.export import META_FILE, ExportMeta
    from zoo.index.schema import Lineage, QuantizationFacts, SparsityFacts
    from zoo.models import get_model
    from zoo.models.checkpoint import save_checkpoint

    torch.manual_seed(model.seed)
    net = get_model(model.arch, **model.arch_kwargs).eval()
    total = zeros = 0
    per_layer: dict[str, float] = {}
    with torch.no_grad():
        for name, param in net.named_parameters():
            if param.dim() < 2:
                continue
            k = int(param.numel() * model.sparsity)
            if k:
                threshold = param.abs().flatten().kthvalue(k).values
                param[param.abs() <= threshold] = 0.0
            layer_zeros = int((param == 0).sum())
            per_layer[name] = layer_zeros / param.numel()
            total += param.numel()
            zeros += layer_zeros
    out = save_checkpoint(net, Path(folder))
    sample = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(model.seed))
    (out / "samples").mkdir(exist_ok=True)
    with torch.inference_mode():
        expected = net(sample)
    save_file({"input": sample, "output": expected}, str(out / "samples" / "batch.safetensors"))
    (out / "recipe.yaml").write_text(
        "version: 1\nstages:\n  prune:\n    run_type: oneshot\n    modifiers:\n"
        f"      - type: MagnitudePruningModifier\n        sparsity: {model.sparsity:.2f}\n"
        if model.sparsity
        else "version: 1\nstages: {}\n"
    )
    dataset = model.stub.split("/")[3]
    metrics: dict[str, dict[str, Scalar]] = {dataset: {"accuracy": model.accuracy}}
    control = 1.3 if model.noisy else 1.0
    timing = BatchFigures(
        p50_ms=model.latency_ms,
        p90_ms=model.latency_ms,
        throughput=round(1000 / model.latency_ms, 2),
        speedup=1.0,
        control=control,
        spread=0.02,
        noisy=model.noisy,
    )
    on_runtimes = {
        runtime: ModelFigures(batches={1: BatchFigures(p50_ms=ms, throughput=1000 / ms)})
        for runtime, ms in model.runtime_latency_ms.items()
    }
    benchmarks = BenchmarkReport(
        "cpu-2core", ModelFigures(batches={1: timing}), ModelFigures(), runtimes=on_runtimes
    ).index_figures()
    quant = (
        QuantizationFacts(scheme=model.quantization, weight_bits=8, method="ptq")
        if model.quantization
        else QuantizationFacts()
    )
    meta = ExportMeta(
        stub=model.stub,
        metrics=metrics,
        benchmarks=benchmarks,
        sparsity=SparsityFacts(
            overall=zeros / total if total else 0.0,
            parameters=total,
            nonzero=total - zeros,
            model_parameters=count_parameters(net),
            model_nonzero=count_nonzero(net),
            per_layer=per_layer,
        ),
        quantization=quant,
        lineage=Lineage(parent=model.parent, data_hash="d" * 16, recipe_hash=f"r{model.seed:015d}"),
    )
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*")}
    (out / "README.md").write_text(
        render_card(meta, model.arch, [], sizes)
        + f"\nA **{model.arch}** made for tests.\n\n- accuracy is synthetic\n"
        "- <b>raw html</b> stays text\n"
    )
    (out / META_FILE).write_text(meta.to_json())
    return out


BASE = "zoo:cv/classification/mlp/fashion_mnist/base"
DEMO: tuple[DemoModel, ...] = (
    DemoModel(BASE, accuracy=0.884, latency_ms=0.40, seed=1),
    DemoModel(
        "zoo:cv/classification/mlp/fashion_mnist/pruned80",
        sparsity=0.8,
        accuracy=0.879,
        latency_ms=0.22,
        parent=BASE + "@v1",
        seed=2,
    ),
    DemoModel(
        "zoo:cv/classification/mlp/fashion_mnist/pruned95",
        sparsity=0.95,
        accuracy=0.861,
        latency_ms=0.15,
        parent="zoo:cv/classification/mlp/fashion_mnist/pruned80@v1",
        seed=3,
    ),
    DemoModel(
        "zoo:cv/classification/mlp/fashion_mnist/small",
        arch_kwargs={"hidden": [64]},
        accuracy=0.868,
        latency_ms=0.10,
        seed=4,
    ),
    DemoModel(
        "zoo:cv/classification/mlp/fashion_mnist/pruned80_quant",
        sparsity=0.8,
        accuracy=0.874,
        latency_ms=0.12,
        parent="zoo:cv/classification/mlp/fashion_mnist/pruned80@v1",
        quantization="int8",
        seed=5,
    ),
    DemoModel(
        "zoo:cv/classification/cnn_small/fashion_mnist/base",
        arch="cnn_small",
        arch_kwargs={"channels": [8, 16]},
        accuracy=0.858,
        latency_ms=0.90,
        seed=6,
    ),
    # Transferred to another dataset: its parent named by stub, pinned to v1 on publish.
    DemoModel(
        "zoo:cv/classification/cnn_small/mnist/pruned50",
        arch="cnn_small",
        arch_kwargs={"channels": [8, 16]},
        sparsity=0.5,
        accuracy=0.981,
        latency_ms=0.85,
        noisy=True,
        parent="zoo:cv/classification/cnn_small/fashion_mnist/base",
        seed=7,
    ),
    # A second version of the base stub: better accuracy, same architecture.
    DemoModel(BASE, accuracy=0.889, latency_ms=0.41, seed=8),
)


def populate(
    store: Any, workdir: str | os.PathLike[str], models: Sequence[DemoModel] = DEMO
) -> list[str]:
    """Publish `models` (in order) into `store`; returns the published refs."""
    from zoo.index.export import read_export
    from zoo.index.lineage import pin_parent
    from zoo.index.publish import publish
    from zoo.index.view import open_index

    refs = []
    for i, model in enumerate(models):
        export = read_export(make_export(Path(workdir) / f"export-{i}", model))
        if export.meta.lineage.parent is not None:  # as the register stage does
            lineage = pin_parent(export.meta.lineage, open_index(store))
            export = replace(export, meta=replace(export.meta, lineage=lineage))
        refs.append(publish(export, store).entry.ref)
    return refs
