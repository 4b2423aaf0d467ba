"""The functions behind `import zoo`: search, info, download, load, recipe, validate, diff.

Each takes `registry` (URL; default $ZOO_REGISTRY, then the local demo store),
`cache_dir` (default $ZOO_CACHE_DIR, then the user cache) and `offline` (default $ZOO_OFFLINE).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.client.diff import EntryDiff, diff_entries
from zoo.client.search import Hit, Query, SearchIndex, Threshold
from zoo.client.session import Session, Snapshot
from zoo.evaluation.schema import DEFAULT_RUNTIME, figures_of, figures_on
from zoo.index.schema import Entry, EntrySummary

if TYPE_CHECKING:
    from torch import nn

    from zoo.client.validate import ValidationReport

PathLike = str | os.PathLike[str]


def session(
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
) -> Session:
    return Session(registry, cache_dir=cache_dir, offline=offline, progress=progress)


def latency_ms(
    benchmarks: Mapping[str, Mapping[str, Any]], machine: str | None = None
) -> float | None:
    """The median latency at the smallest batch measured (batch 1), in ms, from an
    entry's benchmarks (first machine unless named); None when none was recorded."""
    figures = figures_of(benchmarks, machine)
    return None if figures is None else figures.latency_ms


def search(
    text: str | None = None,
    *,
    where: Sequence[str | Threshold] = (),
    sort: str | None = None,
    descending: bool | None = None,
    pareto: str | None = None,
    metric: str = "accuracy",
    quantized: bool | None = None,
    min_sparsity: float | None = None,
    max_sparsity: float | None = None,
    all_versions: bool = False,
    limit: int | None = None,
    adapters_of: str | None = None,
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
    runtime: str = "torch",
    **facets: str,
) -> list[Hit]:
    """Models matching facets (`task="classification"`, `sparse_tag="pruned*"`), conditions
    (`where=["accuracy>=0.9"]`), sorted (`sort="size"`) or reduced to a Pareto front
    (`pareto="size"`: the smallest model for each accuracy level). `adapters_of="STUB"`
    (or `STUB@vN`) keeps only the adapter entries over that base.

    >>> zoo.search(dataset="fashion_mnist", where=["accuracy>=0.85"], sort="size", limit=1)

    `runtime` names whose latency `sort="latency"` and `pareto="latency"` read (figures
    the benchmark recorded on "onnxruntime" or "openvino"; entries without any sort last).
    """
    from zoo.runtimes.table import runtime_named

    runtime_named(runtime)  # an unknown name fails here, listing the known ones
    s = session(registry, cache_dir, offline)
    query = Query(
        text=text,
        facets=facets,
        quantized=quantized,
        min_sparsity=min_sparsity,
        max_sparsity=max_sparsity,
        where=[w if isinstance(w, Threshold) else Threshold.parse(w) for w in where],
        latest_only=not all_versions,
        sort=sort,
        descending=descending,
        metric=metric,
        pareto=pareto,
        limit=limit,
        adapters_of=adapters_of,
    )
    index = SearchIndex(s.index.summaries())
    return index.search(query, latency_of=_latency_lookup(s, runtime))


def _latency_lookup(s: Session, runtime: str = DEFAULT_RUNTIME) -> Any:
    def latency_of(summary: EntrySummary) -> float | None:
        # Benchmarks live in full entries (summaries keep metrics only); read them only
        # when a query sorts or builds a front by latency.
        benchmarks = s.index.entry(summary.stub, summary.version).benchmarks
        if runtime == DEFAULT_RUNTIME:
            return latency_ms(benchmarks)
        figures = figures_on(benchmarks, runtime)
        return None if figures is None else figures.latency_ms

    return latency_of


def info(
    ref: str,
    *,
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
) -> Entry:
    """The index entry of `stub[@version|@alias]` (files, metrics, lineage, ...)."""
    return session(registry, cache_dir, offline).resolve(ref)


def download(
    ref: str,
    local_dir: PathLike | None = None,
    *,
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
) -> Path:
    """Download a model into the cache (resuming, verified) and return its folder; with
    `local_dir`, copy the files there too and return that."""
    return session(registry, cache_dir, offline, progress).download(ref, local_dir).folder


def load(
    ref: str,
    *,
    keep_compressed: bool = False,
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
    runtime: str = "torch",
) -> nn.Module:
    """A ready `nn.Module` (eval mode) for `stub[@version|@alias]`, downloaded if needed.

    `runtime="onnxruntime"` or `"openvino"` exports the model to ONNX and returns a
    wrapper around that runtime's compiled model, called like the torch one. A static int8
    entry also loads as `"onnxruntime-dequant"` (its float twin) or `"onnxruntime-mixed"`
    (int8 with its image-input convolution in fp32), the forms `make bench-runtimes` times.
    """
    from zoo.client.load import load_folder

    if runtime != "torch":  # before any download: a bad name or missing package fails fast
        from zoo.errors import ConfigError
        from zoo.runtimes.prepare import served
        from zoo.runtimes.table import require

        require(served(runtime).runtime)
        if keep_compressed:
            raise ConfigError(f"keep_compressed runs CSR layers in torch, not in {runtime}")
    s = session(registry, cache_dir, offline, progress)
    snap = s.download(ref)
    base = s.adapter_base(snap.entry)
    if base is None:
        model = load_folder(snap.folder, keep_compressed=keep_compressed)
    else:  # an adapter entry: its base (already cached by download) with the adapter on
        from zoo.compress.adapter import compose

        base_model = load_folder(s.snapshot_folder(base), keep_compressed=keep_compressed)
        model = compose(base_model, snap.folder)
    if runtime != "torch":
        from zoo.runtimes.prepare import on_runtime

        model = on_runtime(model, runtime, snap.folder)
    model.zoo_ref = snap.ref  # type: ignore[assignment]
    return model


def recipe(
    ref: str,
    *,
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
) -> str | None:
    """The recipe text (YAML) that produced the model, or None for a model without one."""
    s = session(registry, cache_dir, offline)
    entry = s.resolve(ref)
    return s.read_file(entry, entry.recipe).decode() if entry.recipe else None


def validate(
    ref: str,
    *,
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
    strict: bool = True,
) -> ValidationReport:
    """Load the model, run its sample inputs, compare with its sample outputs. Raises
    ModelValidationError on a mismatch unless `strict` is False."""
    from zoo.client.load import load_folder, readable_files
    from zoo.client.validate import validate_model

    snap: Snapshot = session(registry, cache_dir, offline, progress).download(ref)
    model = load_folder(snap.folder)
    with readable_files(snap.folder, "run the sample files"):
        report = validate_model(model, snap.folder, snap.ref)
    return report.raise_if_failed() if strict else report


def diff(
    old: str,
    new: str,
    *,
    registry: str | None = None,
    cache_dir: PathLike | None = None,
    offline: bool | None = None,
) -> EntryDiff:
    """Metrics, benchmarks, facts, files and recipe that differ between two versions."""
    s = session(registry, cache_dir, offline)
    a, b = s.resolve(old), s.resolve(new)
    recipe_a = s.read_file(a, a.recipe).decode() if a.recipe else None
    recipe_b = s.read_file(b, b.recipe).decode() if b.recipe else None
    return diff_entries(a, b, recipe_a, recipe_b)
