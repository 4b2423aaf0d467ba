"""The one definition of a benchmark's figures, for the writer and every reader.

The benchmark stage writes a `BenchmarkReport` (metrics/bench/<entry>.json); the export
stage keeps `BenchmarkReport.index_figures()` in the index entry (machine -> flat
figures); search, Pareto fronts, the catalog, the summary table and the Pareto stage
read them back through `ModelFigures.parse`. Keys are spelled only here.

Flat keys: `b<batch>_<measure>` per batch size (e.g. `b1_p50_ms`, `b64_speedup`), and
the model-wide `size_bytes`, `size_ratio`, `parameters`, `nonzero`, `sparsity`,
`flops`, `flops_sparse`. Torch-free, so the client reads it without loading torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from zoo.errors import SchemaError

#: A ratio of the baseline timed against itself must stay within 1.0 +- this.
CONTROL_TOLERANCE = 0.05
_BATCH_KEY = re.compile(r"^b([1-9][0-9]*)_([a-z0-9_]+)$")


@dataclass(frozen=True)
class BatchFigures:
    """One model's timing at one batch size, measured beside its baseline."""

    p50_ms: float
    throughput: float  # examples per second at the median latency
    p90_ms: float | None = None  # in the stage's JSON; index entries keep the median only
    # Resident-set high water of a fresh process that loads the model and runs this
    # batch, above the process's level before loading (MB).
    peak_memory_mb: float | None = None
    speedup: float | None = None  # baseline time / model time (median of paired rounds)
    # The baseline timed against itself in the same rounds: 1.0 on a quiet machine.
    control: float | None = None
    spread: float | None = None  # interquartile range of the paired ratios, over the median
    # After re-measuring, the control still strayed beyond CONTROL_TOLERANCE or a ratio
    # was still too imprecise to read to half of it (see zoo.evaluation.speed).
    noisy: bool = False

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


#: Model-wide figures (not per batch): name -> type.
_MODEL_FIELDS: dict[str, type] = {
    "size_bytes": int,
    "size_ratio": float,
    "parameters": int,
    "nonzero": int,
    "sparsity": float,
    "flops": int,
    "flops_sparse": int,
}
#: What an index entry keeps per batch (the full table stays in the stage's JSON).
_INDEX_BATCH_FIELDS = ("p50_ms", "throughput", "peak_memory_mb", "speedup", "control", "spread")
_INDEX_MODEL_FIELDS = ("size_bytes", "size_ratio", "flops", "flops_sparse")


@dataclass(frozen=True)
class ModelFigures:
    """Every figure of one model on one machine: timings per batch size and model facts."""

    batches: dict[int, BatchFigures] = field(default_factory=dict)
    size_bytes: int | None = None
    size_ratio: float | None = None  # baseline export size / this export size
    parameters: int | None = None
    nonzero: int | None = None
    sparsity: float | None = None  # zeros over every weight of the model (all layers)
    flops: int | None = None
    flops_sparse: int | None = None

    @property
    def latency_ms(self) -> float | None:
        """Median latency at the smallest batch size measured (batch 1 in the pipeline)."""
        return self.batches[min(self.batches)].p50_ms if self.batches else None

    def batch(self, size: int) -> BatchFigures | None:
        return self.batches.get(size)

    @property
    def noisy(self) -> bool:
        return any(b.noisy for b in self.batches.values())

    def flat(self, batch_fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        """`{b1_p50_ms: ..., size_bytes: ...}`, the form JSON files and entries keep."""
        names = batch_fields or BatchFigures.field_names()
        out: dict[str, Any] = {}
        for size, figures in sorted(self.batches.items()):
            values = asdict(figures)
            for name in names:
                if values[name] is not None and (name != "noisy" or values[name]):
                    out[f"b{size}_{name}"] = values[name]
        for name in _MODEL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def index_figures(self) -> dict[str, Any]:
        flat = self.flat((*_INDEX_BATCH_FIELDS, "noisy"))
        keep = {k: v for k, v in flat.items() if not _is_model_field(k)}
        keep.update({k: flat[k] for k in _INDEX_MODEL_FIELDS if k in flat})
        return keep

    @classmethod
    def parse(cls, values: Mapping[str, Any], where: str = "benchmark") -> ModelFigures:
        """Read flat figures back; keys this schema does not define are an error."""
        batches: dict[int, dict[str, Any]] = {}
        model: dict[str, Any] = {}
        known = set(BatchFigures.field_names())
        for key, value in values.items():
            match = _BATCH_KEY.match(str(key))
            if match and match.group(2) in known:
                name = match.group(2)
                batches.setdefault(int(match.group(1)), {})[name] = _check(
                    value, bool if name == "noisy" else float, f"{where}: {key}"
                )
            elif key in _MODEL_FIELDS:
                model[str(key)] = _check(value, _MODEL_FIELDS[str(key)], f"{where}: {key}")
            else:
                raise SchemaError(
                    where,
                    f"unknown benchmark figure {key!r}: figures are b<batch>_<measure> "
                    f"({', '.join(sorted(known))}) or {', '.join(_MODEL_FIELDS)}",
                )
        parsed: dict[int, BatchFigures] = {}
        for size, figures in sorted(batches.items()):
            missing = [n for n in ("p50_ms", "throughput") if n not in figures]
            if missing:
                raise SchemaError(where, f"batch {size}: missing {', '.join(missing)}")
            parsed[size] = BatchFigures(**figures)
        return cls(batches=parsed, **model)


def _is_model_field(key: str) -> bool:
    return key in _MODEL_FIELDS


def _check(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise SchemaError(where, f"expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(where, f"expected a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise SchemaError(where, f"expected a finite number >= 0, got {value!r}")
    if kind is int:
        if value != int(value):
            raise SchemaError(where, f"expected a whole number, got {value!r}")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class BenchmarkReport:
    """The benchmark stage's output: the model and its baseline timed side by side."""

    machine: str
    model: ModelFigures
    baseline: ModelFigures
    model_csr: ModelFigures | None = None  # the model's sparse layers as CSR matmuls
    # The model on other runtimes (zoo.runtimes.table: "onnxruntime", "openvino"),
    # timed in the same interleaved rounds; speedups are to the same baseline.
    runtimes: dict[str, ModelFigures] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float | None:
        return self.model.size_ratio

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "machine": self.machine,
            "model": self.model.flat(),
            "baseline": self.baseline.flat(),
        }
        if self.model_csr is not None:
            out["model_csr"] = self.model_csr.flat()
        if self.runtimes:
            out["runtimes"] = {name: f.flat() for name, f in sorted(self.runtimes.items())}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "benchmark") -> BenchmarkReport:
        try:
            machine, model, baseline = data["machine"], data["model"], data["baseline"]
        except (KeyError, TypeError) as exc:
            raise SchemaError(where, f"not a benchmark report: missing {exc}") from None
        if not isinstance(machine, str) or not machine:
            raise SchemaError(where, f"machine must be a non-empty string, got {machine!r}")
        csr = data.get("model_csr")
        runtimes = data.get("runtimes", {})
        if not isinstance(runtimes, Mapping):
            raise SchemaError(where, f"runtimes must be a mapping, got {runtimes!r}")
        for name in runtimes:
            if not isinstance(name, str) or not _RUNTIME_NAME.match(name):
                raise SchemaError(where, f"runtimes: {name!r} is not a runtime name")
        return cls(
            machine=machine,
            model=ModelFigures.parse(model, f"{where}: model"),
            baseline=ModelFigures.parse(baseline, f"{where}: baseline"),
            model_csr=None if csr is None else ModelFigures.parse(csr, f"{where}: model_csr"),
            runtimes={
                name: ModelFigures.parse(values, f"{where}: runtimes.{name}")
                for name, values in runtimes.items()
            },
        )

    def index_figures(self) -> dict[str, dict[str, Any]]:
        """What an index entry keeps: {machine: the model's figures}, and the model on
        each other runtime under `<machine>/<runtime>` (torch stays the plain machine)."""
        out = {self.machine: self.model.index_figures()}
        for name, figures in sorted(self.runtimes.items()):
            out[runtime_key(self.machine, name)] = figures.index_figures()
        return out


#: The runtime an index entry's plain machine key measured (zoo.runtimes.table's first).
DEFAULT_RUNTIME = "torch"
_RUNTIME_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def runtime_key(machine: str, runtime: str) -> str:
    """The benchmarks key of figures measured on `runtime`: `<machine>/<runtime>`."""
    return machine if runtime == DEFAULT_RUNTIME else f"{machine}/{runtime}"


def split_runtime(key: str) -> tuple[str, str]:
    """(machine, runtime) of a benchmarks key."""
    machine, _, runtime = key.partition("/")
    return machine, runtime or DEFAULT_RUNTIME


def figures_on(
    benchmarks: Mapping[str, Mapping[str, Any]], runtime: str, machine: str | None = None
) -> ModelFigures | None:
    """An entry's figures on `runtime` (on `machine`, default the first that has them)."""
    for key in sorted(benchmarks):
        on_machine, on_runtime = split_runtime(key)
        if on_runtime == runtime and machine in (None, on_machine):
            return ModelFigures.parse(benchmarks[key], f"benchmarks[{key!r}]")
    return None


def runtimes_of(
    benchmarks: Mapping[str, Mapping[str, Any]], machine: str | None = None
) -> dict[str, ModelFigures]:
    """{runtime: figures} of one machine (default: the first, by name)."""
    machines = sorted({split_runtime(key)[0] for key in benchmarks})
    chosen = machine or (machines[0] if machines else None)
    out: dict[str, ModelFigures] = {}
    for key in sorted(benchmarks):
        on_machine, runtime = split_runtime(key)
        if on_machine == chosen:
            out[runtime] = ModelFigures.parse(benchmarks[key], f"benchmarks[{key!r}]")
    return out


def fastest_runtime(figures: Mapping[str, ModelFigures], batch: int) -> str | None:
    """The runtime with the lowest median latency at `batch`, None when none has it."""
    timed = {name: f.batches[batch].p50_ms for name, f in figures.items() if batch in f.batches}
    return min(timed, key=lambda name: timed[name]) if timed else None


def figures_of(
    benchmarks: Mapping[str, Mapping[str, Any]], machine: str | None = None
) -> ModelFigures | None:
    """An entry's figures on `machine` (default: the first machine, by name)."""
    names = [machine] if machine else sorted(benchmarks)
    for name in names:
        if name in benchmarks:
            return ModelFigures.parse(benchmarks[name], f"benchmarks[{name!r}]")
    return None
