"""The evaluate and benchmark stages of a zoo entry, each against its dense baseline."""

from __future__ import annotations

import hashlib
import json
import platform
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.compress.format import CSR_MIN_SPARSITY  # a layer this sparse is also timed as CSR
from zoo.data.loaders import SplitTensors, load_split
from zoo.data.prepare import dataset_digest
from zoo.evaluation.conditional import measure_conditional
from zoo.evaluation.counting import count_nonzero, count_parameters, estimate_flops
from zoo.evaluation.speed import measure_side_by_side, speed_table
from zoo.fsutil import atomic_write_json, sha256_file
from zoo.models import arch_config_of
from zoo.pipeline.dense import text_tokenizer
from zoo.pipeline.entries import BenchSettings, CompressSettings, EntryConfig
from zoo.pipeline.model_io import load_model_folder
from zoo.training import Evaluation, evaluate

EVAL_SPLITS = ("val", "test")
# MiniLM is benchmarked on real reviews padded to a fixed length, so every batch is alike.
BENCH_SEQUENCE_LENGTH = 48


def _tokenizer_for(model: nn.Module, folder: str | None = None) -> Any:
    return text_tokenizer(arch_config_of(model).arch, folder)


def is_causal_lm(model: nn.Module) -> bool:
    """A language model (the `hf` architecture's causal LMs): measured by perplexity."""
    arch = arch_config_of(model)
    return arch.arch == "hf" and arch.kwargs.get("task") == "causal_lm"


EVAL_CACHE = Path(".zoo/cache/evaluations")


def folder_digest(folder: Path) -> str:
    """Identity of a model folder's content: its checksum list, or its config (which
    records the weights' sha256) for a dense checkpoint."""
    from zoo.pipeline.model_io import EXPORT_MARKER

    marker = folder / EXPORT_MARKER
    return sha256_file(marker if marker.is_file() else folder / "config.json")


def evaluate_cached(model_dir: Path, data: SplitTensors, key: str) -> Evaluation:
    """Evaluate the model in `model_dir` on `data`, remembering the result by content.

    Every entry is compared with its baseline, so the baseline's predictions are needed
    once per entry; they depend only on the baseline's files and the data, so they are
    computed once and kept under .zoo/cache (a cache: deleting it changes nothing).
    """
    digest = hashlib.sha256(f"{folder_digest(model_dir)}:{key}".encode()).hexdigest()
    path = EVAL_CACHE / f"{digest}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        return Evaluation(
            accuracy=cached["accuracy"],
            loss=cached["loss"],
            n=cached["n"],
            predictions=torch.tensor(cached["predictions"]),
        )
    result = evaluate(load_model_folder(model_dir), data)
    atomic_write_json(
        path,
        {
            "accuracy": result.accuracy,
            "loss": result.loss,
            "n": result.n,
            "predictions": result.predictions.tolist(),
        },
    )
    return result


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
    tokenizer = _tokenizer_for(model, entry.tokenizer)
    data_key = dataset_digest(data_root / entry.data)
    metrics: dict[str, Any] = {}
    for split in EVAL_SPLITS:
        data = load_split(
            data_root / entry.data,
            split,
            limit=settings.limit_eval,
            tokenizer=tokenizer,
            max_length=entry.max_length,
        )
        if is_causal_lm(model):
            metrics[split] = _perplexities(model, entry, data)
            continue
        ours, conditional = measure_conditional(model, partial(evaluate, model, data))
        cache_key = f"{data_key}:{split}:{settings.limit_eval}:{entry.max_length}"
        reference = (
            ours if model_dir == baseline_dir else evaluate_cached(baseline_dir, data, cache_key)
        )
        agreement = float((ours.predictions == reference.predictions).float().mean())
        metrics[split] = {
            **ours.as_metrics(),
            "agreement": agreement,
            "baseline_accuracy": reference.accuracy,
            "retained": ours.accuracy / reference.accuracy if reference.accuracy else 0.0,
            **conditional,  # MoE / early exit: active parameters, layers run, expert load
        }
    return metrics


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
) -> dict[str, Any]:
    """Latency, throughput, memory, size, parameters and FLOPs, side by side with the baseline."""
    model = load_model_folder(model_dir)
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
    sparsity = _sparsity(model)
    if sparsity >= CSR_MIN_SPARSITY and not _is_quantized(model):
        models["model_csr"] = load_model_folder(model_dir, keep="sparse")
    speeds = speed_table(
        measure_side_by_side(
            models,
            make_inputs,
            tuple(bench.batch_sizes),
            rounds=bench.rounds,
            warmup=bench.warmup,
            budget_s=bench.budget_s,
        ),
        baseline="baseline",
    )
    one = make_inputs(1)
    result: dict[str, Any] = {"machine": machine_name()}
    for name, module in (("model", model), ("baseline", baseline)):
        folder = model_dir if name == "model" else baseline_dir
        flops = estimate_flops(module, one)
        result[name] = {
            **speeds[name],
            "parameters": count_parameters(module),
            "nonzero": count_nonzero(module),
            "sparsity": round(_sparsity(module), 4),
            "flops": flops["dense"],
            "flops_sparse": flops["sparse"],
            "size_bytes": _folder_bytes(folder),
        }
    if "model_csr" in speeds:
        result["model_csr"] = speeds["model_csr"]
    result["size_ratio"] = round(
        result["baseline"]["size_bytes"] / result["model"]["size_bytes"], 3
    )
    return result


def _is_quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
