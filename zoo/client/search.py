"""Faceted search, sorting and Pareto fronts over the index's version summaries.

`SearchIndex` turns the summaries into columns once (facet codes, metric arrays), so
each query is a few vectorised comparisons: a query over 100,000 versions takes
milliseconds (see bench/bench_client.py).

Metric names: `accuracy` means the metric on the model's own dataset (the stub's dataset
facet, else the first dataset that reports it); `accuracy@mnist` names the dataset.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.client.pareto import pareto_front
from zoo.errors import InvalidQueryError, InvalidStubError
from zoo.index.schema import FACETS, EntrySummary, Stub, parse_ref, parse_version

#: Sort keys that are not metrics, with their natural direction (True: largest first).
BUILTIN_SORTS: dict[str, bool] = {
    "size": False,
    "parameters": False,
    "sparsity": True,
    "latency": False,
    "created": True,
    "version": True,
    "stub": False,
}
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "=": operator.eq,
}
_THRESHOLD_RE = re.compile(r"^\s*([A-Za-z0-9_./@-]+)\s*(>=|<=|==|=|>|<)\s*([-+0-9.eE]+)\s*$")

#: Latency of one summary in milliseconds, or None (benchmarks live in full entries).
LatencyOf = Callable[[EntrySummary], float | None]


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _THRESHOLD_RE.match(text)
        if not match:
            raise InvalidQueryError(
                f"cannot read the condition {text!r}: write METRIC OP NUMBER, e.g. "
                "'accuracy>=0.9' or 'accuracy@mnist>0.95' (OP one of >=, <=, >, <, ==)"
            )
        name, op, number = match.groups()
        try:
            value = float(number)
        except ValueError:
            raise InvalidQueryError(f"{number!r} in {text!r} is not a number") from None
        return cls(name, op, value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class Query:
    """What to look for. Facet values accept shell wildcards (`pruned*`)."""

    text: str | None = None
    facets: Mapping[str, str] = field(default_factory=dict)
    quantized: bool | None = None
    min_sparsity: float | None = None
    max_sparsity: float | None = None
    where: Sequence[Threshold] = ()
    latest_only: bool = True
    sort: str | None = None
    descending: bool | None = None  # None: the key's natural direction
    metric: str = "accuracy"  # the quality shown and used by the Pareto front
    pareto: str | None = None  # None, "size" or "latency": keep only that front
    limit: int | None = None
    adapters_of: str | None = None  # `stub` or `stub@vN`: only adapters over that base

    def __post_init__(self) -> None:
        unknown = set(self.facets) - set(FACETS)
        if unknown:
            raise InvalidQueryError(
                f"unknown facet(s) {', '.join(sorted(unknown))}; facets are {', '.join(FACETS)}"
            )
        if self.pareto not in (None, "size", "latency"):
            raise InvalidQueryError(f"pareto must be 'size' or 'latency', not {self.pareto!r}")
        if self.limit is not None and self.limit < 0:
            raise InvalidQueryError("limit must be >= 0")
        if self.adapters_of is not None:
            base_of(self.adapters_of, exact=False)  # a clear error now, not an empty list


@dataclass(frozen=True)
class Hit:
    summary: EntrySummary
    metric: float | None
    latency_ms: float | None = None

    @property
    def ref(self) -> str:
        return self.summary.ref


def base_of(ref: str, exact: bool = True) -> tuple[Stub, int | None]:
    """(stub, version) of a base named `stub@vN` (or, not `exact`, also a bare `stub`)."""
    try:
        stub, name = parse_ref(ref)
    except InvalidStubError as exc:
        raise InvalidQueryError(f"{ref!r} is not a model stub: {exc}") from exc
    version = parse_version(name) if name else None
    if (name is not None and version is None) or (exact and version is None):
        raise InvalidQueryError(
            f"{ref!r}: name a base as {'' if exact else 'STUB or '}STUB@vN (adapters fit one "
            "version, not an alias)"
        )
    return stub, version


def under_bases(hits: Sequence[Hit]) -> list[tuple[Hit, bool]]:
    """The hits in their order, each adapter moved right after its base when that base is
    among them: (hit, shown under its base)."""
    position: dict[tuple[Stub, int | None], int] = {
        (h.summary.stub, h.summary.version): i for i, h in enumerate(hits)
    }
    children: dict[int, list[Hit]] = {}
    nested: set[int] = set()
    for i, hit in enumerate(hits):
        if hit.summary.adapter_of is None:
            continue
        parent = position.get(base_of(hit.summary.adapter_of))
        if parent is not None and parent != i:
            children.setdefault(parent, []).append(hit)
            nested.add(i)
    out: list[tuple[Hit, bool]] = []
    for i, hit in enumerate(hits):
        if i not in nested:
            out.append((hit, False))
            out.extend((child, True) for child in children.get(i, []))
    return out


def metric_value(summary: EntrySummary, spec: str) -> float | None:
    """The value of `accuracy` / `accuracy@dataset` for one summary (None if absent)."""
    name, _, dataset = spec.partition("@")
    metrics = summary.metrics
    if dataset:
        return _number(metrics.get(dataset, {}).get(name))
    own = metrics.get(summary.stub.dataset)
    if own is not None and name in own:
        return _number(own[name])
    for values in metrics.values():
        if name in values:
            return _number(values[name])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class SearchIndex:
    """Columns over a list of summaries, built once and queried many times."""

    def __init__(self, summaries: Iterable[EntrySummary]) -> None:
        self.summaries: list[EntrySummary] = list(summaries)
        n = len(self.summaries)
        self._facet_values: dict[str, list[str]] = {}
        self._facet_codes: dict[str, np.ndarray] = {}
        for facet in FACETS:
            values = [getattr(s.stub, facet) for s in self.summaries]
            vocabulary = sorted(set(values))
            lookup = {v: i for i, v in enumerate(vocabulary)}
            self._facet_values[facet] = vocabulary
            self._facet_codes[facet] = np.fromiter((lookup[v] for v in values), np.int32, n)
        self._stub_text = [str(s.stub) for s in self.summaries]
        self.size = np.fromiter((s.size for s in self.summaries), np.float64, n)
        self.parameters = np.fromiter((s.parameters for s in self.summaries), np.float64, n)
        self.sparsity = np.fromiter((s.sparsity for s in self.summaries), np.float64, n)
        self.version = np.fromiter((s.version for s in self.summaries), np.float64, n)
        self.quantized = np.fromiter((bool(s.quantization) for s in self.summaries), bool, n)
        # The base of each adapter (None for a model), parsed once.
        self._bases = [
            None if s.adapter_of is None else base_of(s.adapter_of) for s in self.summaries
        ]
        latest: dict[str, int] = {}
        for i, (text, s) in enumerate(zip(self._stub_text, self.summaries, strict=True)):
            j = latest.get(text)
            if j is None or self.summaries[j].version < s.version:
                latest[text] = i
        self.is_latest = np.zeros(n, bool)
        self.is_latest[list(latest.values())] = True
        self._created = [s.created_at for s in self.summaries]
        order = sorted(range(n), key=lambda i: (self._stub_text[i], -self.summaries[i].version))
        self._default_rank = np.empty(n, np.int64)
        self._default_rank[order] = np.arange(n)
        self._metric_columns: dict[str, np.ndarray] = {}
        for name in self.metric_names():  # built now, so no query pays for it
            self.metric_column(name)

    def __len__(self) -> int:
        return len(self.summaries)

    # -- columns ------------------------------------------------------------------------
    def metric_column(self, spec: str) -> np.ndarray:
        column = self._metric_columns.get(spec)
        if column is None:
            column = np.fromiter(
                (np.nan if (v := metric_value(s, spec)) is None else v for s in self.summaries),
                np.float64,
                len(self.summaries),
            )
            self._metric_columns[spec] = column
        return column

    def facet_counts(self, facet: str, mask: np.ndarray | None = None) -> dict[str, int]:
        codes = self._facet_codes[facet] if mask is None else self._facet_codes[facet][mask]
        counts = np.bincount(codes, minlength=len(self._facet_values[facet]))
        return {v: int(c) for v, c in zip(self._facet_values[facet], counts, strict=True) if c}

    def metric_names(self) -> list[str]:
        names = {name for s in self.summaries for values in s.metrics.values() for name in values}
        return sorted(names)

    # -- queries ------------------------------------------------------------------------
    def mask(self, query: Query) -> np.ndarray:
        keep = self.is_latest.copy() if query.latest_only else np.ones(len(self), bool)
        for facet, pattern in query.facets.items():
            if not pattern:
                continue
            vocabulary = self._facet_values[facet]
            wanted = [i for i, v in enumerate(vocabulary) if fnmatch.fnmatchcase(v, pattern)]
            keep &= np.isin(self._facet_codes[facet], wanted)
        if query.quantized is not None:
            keep &= self.quantized == query.quantized
        if query.min_sparsity is not None:
            keep &= self.sparsity >= query.min_sparsity - 1e-9
        if query.max_sparsity is not None:
            keep &= self.sparsity <= query.max_sparsity + 1e-9
        for threshold in query.where:
            column = self.metric_column(threshold.metric)
            with np.errstate(invalid="ignore"):
                keep &= _OPS[threshold.op](column, threshold.value)  # NaN compares False
        for word in (query.text or "").lower().split():
            keep &= self._contains(word)
        if query.adapters_of is not None:
            stub, version = base_of(query.adapters_of, exact=False)
            keep &= np.fromiter(
                (b is not None and b[0] == stub and version in (None, b[1]) for b in self._bases),
                bool,
                len(self),
            )
        return keep

    def _contains(self, word: str) -> np.ndarray:
        """Rows whose stub contains `word`. A word within one facet is looked up in the
        facet vocabularies (a few thousand strings, not 100k); one spanning facets
        (`mlp/mnist`) falls back to scanning the stub texts."""
        if word in "zoo:":
            return np.ones(len(self), bool)
        if "/" in word or ":" in word or "@" in word:
            texts = self._stub_text
            return np.fromiter((word in t for t in texts), bool, len(texts))
        hit = np.zeros(len(self), bool)
        for facet in FACETS:
            vocabulary = self._facet_values[facet]
            codes = [i for i, v in enumerate(vocabulary) if word in v]
            if codes:
                hit |= np.isin(self._facet_codes[facet], codes)
        return hit

    def search(self, query: Query, latency_of: LatencyOf | None = None) -> list[Hit]:
        rows = np.flatnonzero(self.mask(query))
        quality = self.metric_column(query.metric)
        needs_latency = query.sort == "latency" or query.pareto == "latency"
        latency: dict[int, float | None] = {}
        if needs_latency or latency_of is not None:
            for i in rows.tolist():
                latency[i] = latency_of(self.summaries[i]) if latency_of else None
        if query.pareto:
            sizes = self.size
            cost: Callable[[int], float | None] = (
                (lambda i: float(sizes[i])) if query.pareto == "size" else latency.get
            )
            rows = np.array(
                pareto_front(
                    rows.tolist(),
                    quality=lambda i: None if math.isnan(quality[i]) else float(quality[i]),
                    cost=cost,
                ),
                dtype=np.int64,
            )
        rows = self._order(rows, query, quality, latency)
        if query.limit is not None:
            rows = rows[: query.limit]
        picked = rows.tolist()
        values = quality[rows].tolist()
        summaries = self.summaries
        return [
            Hit(summaries[i], None if v != v else v, latency.get(i))  # v != v: NaN
            for i, v in zip(picked, values, strict=True)
        ]

    def _order(
        self,
        rows: np.ndarray,
        query: Query,
        quality: np.ndarray,
        latency: Mapping[int, float | None],
    ) -> np.ndarray:
        key = query.sort
        if key is None:
            if query.pareto:
                return rows  # the front is already cheapest first
            # Stable, readable default: by stub, newest version first.
            return rows[np.argsort(self._default_rank[rows], kind="stable")]
        descending = BUILTIN_SORTS.get(key, True) if query.descending is None else query.descending
        if key == "stub":
            ranked = rows[np.argsort(self._default_rank[rows], kind="stable")]
            return ranked[::-1] if descending else ranked
        if key == "created":
            order = sorted(rows.tolist(), key=self._created.__getitem__, reverse=descending)
            return np.array(order, np.int64)
        if key == "latency":
            values = np.array(
                [np.nan if (v := latency.get(i)) is None else v for i in rows.tolist()],
                np.float64,
            )
        else:
            column = {
                "size": self.size,
                "parameters": self.parameters,
                "sparsity": self.sparsity,
                "version": self.version,
            }.get(key)
            values = (column if column is not None else self.metric_column(key))[rows]
        # Missing values go last whichever the direction; ties keep index order.
        missing = np.isnan(values)
        signed = np.where(missing, np.inf, -values if descending else values)
        return rows[np.lexsort((rows, signed))]
