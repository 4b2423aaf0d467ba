"""The export stage: the deployable folder of one zoo entry, with everything measured."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.data.loaders import collate, load_split
from zoo.data.prepare import dataset_digest
from zoo.evaluation.conditional_names import is_fact as is_conditional_fact
from zoo.evaluation.schema import BenchmarkReport
from zoo.index.schema import Lineage
from zoo.pipeline.entries import BenchSettings, EntryConfig, model_dir
from zoo.pipeline.measure import EXIT_BLOCK, _tokenizer_for, use_chosen_threshold
from zoo.pipeline.model_io import load_model_folder, read_receipt


def parent_stub(entry: EntryConfig, entries: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The stub of the zoo model this entry was made from (None for a dense entry)."""
    if entry.flow == "dense":
        return None
    if entry.parent.endswith(".json"):  # fetched by stub through the client: exact version
        return str(read_receipt(entry.parent)["ref"])
    for key, other in entries.items():
        if entry.parent == model_dir(key) or (
            other.get("flow") == "dense" and other.get("parent") == entry.parent
        ):
            return str(other["stub"])
    return None


def index_metrics(entry: EntryConfig, metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    test, val = metrics["test"], metrics["val"]
    if "perplexity" in test:  # a causal LM
        return {
            entry.data: {
                "perplexity": round(test["perplexity"], 4),
                "parent_perplexity": round(test["parent_perplexity"], 4),
                "val_perplexity": round(val["perplexity"], 4),
            }
        }
    return {
        entry.data: {
            "accuracy": round(test["accuracy"], 6),
            "loss": round(test["loss"], 6),
            "val_accuracy": round(val["accuracy"], 6),
            "retained": round(test["retained"], 6),
            "agreement": round(test["agreement"], 6),
            # Conditional computation (MoE, early exit): measured on the test split; the
            # early-exit threshold sweep and choice on the validation split.
            **{k: v for k, v in test.items() if is_conditional_fact(k)},
            **{k: v for k, v in (metrics.get(EXIT_BLOCK) or {}).items() if is_conditional_fact(k)},
        }
    }


def run_export(
    entry: EntryConfig,
    entries: Mapping[str, Mapping[str, Any]],
    bench: BenchSettings,
    data_root: Path,
    source_dir: Path,
    metrics: Mapping[str, Any],
    benchmark: BenchmarkReport,
    out_dir: Path,
) -> None:
    from zoo.compress.export import export_model

    model = load_model_folder(source_dir)
    use_chosen_threshold(model, metrics, f"metrics of {entry.key}")
    samples = load_split(
        data_root / entry.data,
        "test",
        limit=bench.sample_examples,
        tokenizer=_tokenizer_for(model, entry.tokenizer),
        max_length=entry.max_length,
    )
    inputs, _ = collate([samples.loader(len(samples)).dataset[i] for i in range(len(samples))])
    export_model(
        model,
        out_dir,
        stub=entry.stub,
        recipe=entry.recipe,
        metrics=index_metrics(entry, metrics),
        benchmarks=benchmark.index_figures(),
        sample_inputs=inputs,
        lineage=Lineage(
            parent=parent_stub(entry, entries), data_hash=dataset_digest(data_root / entry.data)
        ),
        card_fields={"dataset": entry.data, "flow": entry.flow, "baseline": entry.baseline},
    )
