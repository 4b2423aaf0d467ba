"""The evaluate and benchmark stages of a zoo entry, each against its dense baseline."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.compress.format import CSR_MIN_SPARSITY  # a layer this sparse is also timed as CSR
from zoo.data.loaders import SplitTensors, load_split
from zoo.errors import ConfigError
from zoo.evaluation.conditional import choose_exit_threshold, measure_conditional
from zoo.evaluation.counting import count_nonzero, count_parameters, estimate_flops
from zoo.evaluation.memory import peak_memory_mb
from zoo.evaluation.schema import DEFAULT_RUNTIME, BenchmarkReport, ModelFigures
from zoo.evaluation.speed import measure_side_by_side
from zoo.models import arch_config_of
from zoo.modifiers import early_exit
from zoo.pipeline.dense import text_tokenizer
from zoo.pipeline.entries import BenchSettings, CompressSettings, EntryConfig
from zoo.pipeline.model_io import load_model_folder
from zoo.training import evaluate

EVAL_SPLITS = ("val", "test")
EVAL_BATCH = 64
#: The evaluate stage's metrics block of an early-exit model's threshold sweep and choice.
EXIT_BLOCK = "early_exit"
# MiniLM is benchmarked on real reviews padded to a fixed length, so every batch is alike.
BENCH_SEQUENCE_LENGTH = 48


def _tokenizer_for(model: nn.Module, folder: str | None = None) -> Any:
    return text_tokenizer(arch_config_of(model).arch, folder)


def is_causal_lm(model: nn.Module) -> bool:
    """A language model (the `hf` architecture's causal LMs): measured by perplexity."""
    arch = arch_config_of(model)
    return arch.arch == "hf" and arch.kwargs.get("task") == "causal_lm"


def run_evaluate(
    entry: EntryConfig,
    settings: CompressSettings,
    data_root: Path,
    model_dir: Path,
    baseline_dir: Path,
) -> dict[str, Any]:
    """Accuracy and loss per split, and agreement with the baseline's predictions (causal
    LMs: perplexity, beside their parent's)."""
    model = load_model_folder(model_dir)
    # The baseline is evaluated here, every time: a cache of its predictions outside DVC's
    # declared outputs would survive an edit of the code that computed them.
    baseline = model if model_dir == baseline_dir else load_model_folder(baseline_dir)
    tokenizer = _tokenizer_for(model, entry.tokenizer)
    metrics: dict[str, Any] = {}
    splits = {
        split: load_split(
            data_root / entry.data,
            split,
            limit=settings.limit_eval,
            tokenizer=tokenizer,
            max_length=entry.max_length,
        )
        for split in EVAL_SPLITS
    }
    if early_exit.exit_spec(model) is not None:
        # The operating point is chosen on validation data, then every split (and the
        # benchmark and export stages, through EXIT_BLOCK) runs at it.
        metrics[EXIT_BLOCK] = choose_exit_threshold(
            model,
            list(splits["val"].batches(EVAL_BATCH)),
            entry.exit_max_drop,
            entry.exit_threshold,
        )
    for split, data in splits.items():
        if is_causal_lm(model):
            metrics[split] = _perplexities(model, entry, data)
            continue
        ours, conditional = measure_conditional(model, partial(evaluate, model, data))
        reference = ours if baseline is model else evaluate(baseline, data)
        agreement = float((ours.predictions == reference.predictions).float().mean())
        metrics[split] = {
            **ours.as_metrics(),
            "agreement": agreement,
            "baseline_accuracy": reference.accuracy,
            "retained": ours.accuracy / reference.accuracy if reference.accuracy else 0.0,
            **conditional,  # MoE / early exit: active parameters, layers run, expert load
        }
    return metrics


def use_chosen_threshold(model: nn.Module, metrics: Mapping[str, Any], where: str) -> None:
    """Set the early-exit threshold the evaluate stage chose (its metrics, read from
    `where`) on `model`; nothing for a model without exits."""
    if early_exit.exit_spec(model) is None:
        return
    block = metrics.get(EXIT_BLOCK) if isinstance(metrics, Mapping) else None
    threshold = block.get("exit_threshold") if isinstance(block, Mapping) else None
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise ConfigError(
            f"{where}: an early-exit model's evaluate metrics need "
            f"{EXIT_BLOCK}.exit_threshold (a number), got {threshold!r}; re-run its "
            "evaluate stage"
        )
    if not 0.0 <= threshold < float("inf"):
        raise ConfigError(f"{where}: {EXIT_BLOCK}.exit_threshold must be >= 0, got {threshold}")
    early_exit.set_threshold(model, float(threshold))


def _perplexities(model: nn.Module, entry: EntryConfig, data: SplitTensors) -> dict[str, Any]:
    from zoo.evaluation.perplexity import perplexity

    batches = [inputs for inputs, _ in data.loader(32)]
    ours, parent = perplexity(model, batches), perplexity(load_model_folder(entry.parent), batches)
    return {
        "perplexity": ours,
        "parent_perplexity": parent,
        "perplexity_ratio": ours / parent,
        "n": len(data),
    }


def _bench_inputs(data: SplitTensors) -> Any:
    def make(batch_size: int) -> dict[str, torch.Tensor]:
        if len(data) < batch_size:
            repeats = -(-batch_size // len(data))
            return {
                k: v.repeat(repeats, *[1] * (v.dim() - 1))[:batch_size]
                for k, v in data.inputs.items()
            }
        return {k: v[:batch_size] for k, v in data.inputs.items()}

    return make


def _folder_bytes(folder: Path) -> int:
    from zoo.compress.export import deployable_bytes

    if (folder / "SHA256SUMS").is_file():
        return deployable_bytes(folder)
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _sparsity(model: nn.Module) -> float:
    total = count_parameters(model)
    return 1.0 - count_nonzero(model) / total if total else 0.0


def machine_name() -> str:
    """A stable label of the machine kind benchmarks ran on (no host names)."""
    return f"{platform.machine()}-{torch.get_num_threads()}threads-cpu"


def run_benchmark(
    entry: EntryConfig,
    bench: BenchSettings,
    data_root: Path,
    model_dir: Path,
    baseline_dir: Path,
    metrics: Mapping[str, Any] | None = None,
    metrics_path: str = "metrics",
) -> BenchmarkReport:
    """Latency, throughput, memory, size, parameters and FLOPs, side by side with the
    baseline; an early-exit model runs at the threshold its evaluate `metrics` chose."""
    model = load_model_folder(model_dir)
    if metrics is not None:
        use_chosen_threshold(model, metrics, metrics_path)
    baseline = load_model_folder(baseline_dir)
    data = load_split(
        data_root / entry.data,
        "test",
        limit=max(bench.batch_sizes),
        tokenizer=_tokenizer_for(model, entry.tokenizer),
        max_length=BENCH_SEQUENCE_LENGTH,
    )
    make_inputs = _bench_inputs(data)
    models: dict[str, nn.Module] = {"model": model, "baseline": baseline}
    if _sparsity(model) >= CSR_MIN_SPARSITY and not _is_quantized(model):
        models["model_csr"] = load_model_folder(model_dir, keep="sparse")
    runtimes = [r for r in bench.runtimes if r != DEFAULT_RUNTIME]  # torch: `model` itself
    if runtimes:
        from zoo.runtimes.prepare import on_runtime_of

        for runtime in runtimes:
            models[f"runtime/{runtime}"] = on_runtime_of(model, runtime, make_inputs(8))
    batch_sizes = tuple(sorted(bench.batch_sizes))
    timings = measure_side_by_side(
        models,
        make_inputs,
        baseline="baseline",
        batch_sizes=batch_sizes,
        rounds=bench.rounds,
        warmup=bench.warmup,
        budget_s=bench.budget_s,
    )
    inputs_by_batch = {size: make_inputs(size) for size in batch_sizes}
    one = make_inputs(min(batch_sizes))
    figures: dict[str, ModelFigures] = {}
    for name, module, folder in (
        ("model", model, model_dir),
        ("baseline", baseline, baseline_dir),
    ):
        memory = peak_memory_mb(folder, inputs_by_batch)
        flops = estimate_flops(module, one)
        figures[name] = ModelFigures(
            batches={
                size: replace(timing, peak_memory_mb=memory[size])
                for size, timing in timings[name].items()
            },
            size_bytes=_folder_bytes(folder),
            parameters=count_parameters(module),
            nonzero=count_nonzero(module),
            sparsity=round(_sparsity(module), 4),
            flops=flops["dense"],
            flops_sparse=flops["sparse"],
        )
    base_size = figures["baseline"].size_bytes or 0
    model_size = figures["model"].size_bytes or 0
    figures["model"] = replace(figures["model"], size_ratio=round(base_size / model_size, 3))
    csr = ModelFigures(batches=timings["model_csr"]) if "model_csr" in timings else None
    on_runtimes = {r: ModelFigures(batches=timings[f"runtime/{r}"]) for r in runtimes}
    return BenchmarkReport(machine_name(), figures["model"], figures["baseline"], csr, on_runtimes)


def _is_quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
