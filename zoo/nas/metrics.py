"""The objectives a search may use: each is a number one of the pipeline's stages writes
for the trial's zoo entry. One table, read by the checks and by the driver."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zoo.errors import NasError


@dataclass(frozen=True)
class Metric:
    name: str
    file: str  # under the repository, {entry} is the zoo entry's key
    keys: tuple[str, ...]  # path inside that JSON file
    stage: str  # the foreach stage (dvc.yaml) that writes it, run as `<stage>@<entry>`
    description: str
    bench_batch: int | None = None  # needs this batch size in `bench.batch_sizes`

    def path(self, entry: str) -> str:
        return self.file.format(entry=entry)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "accuracy",
            "metrics/zoo/{entry}.json",
            ("val", "accuracy"),
            "evaluate",
            "validation accuracy",
        ),
        Metric(
            "test_accuracy",
            "metrics/zoo/{entry}.json",
            ("test", "accuracy"),
            "evaluate",
            "test accuracy (report it; search on validation accuracy)",
        ),
        Metric(
            "latency_b1_ms",
            "metrics/bench/{entry}.json",
            ("model", "b1_p50_ms"),
            "benchmark",
            "median batch-1 latency in ms, measured on the machine running the trial",
            bench_batch=1,
        ),
        Metric(
            "size_bytes",
            "metrics/bench/{entry}.json",
            ("model", "size_bytes"),
            "benchmark",
            "deployable size in bytes (the compressed folder)",
        ),
        Metric(
            "nonzero",
            "metrics/bench/{entry}.json",
            ("model", "nonzero"),
            "benchmark",
            "nonzero parameters",
        ),
    )
}


def metric(name: str, where: str) -> Metric:
    if name not in METRICS:
        raise NasError(
            f"{where}: {name!r} is not a metric the pipeline produces; "
            f"known: {', '.join(sorted(METRICS))}"
        )
    return METRICS[name]


def read_metrics(
    names: list[str], entry: str, read_text: Callable[[str], str | None]
) -> dict[str, float]:
    """The named metrics of one trial; `read_text(path)` gives a file of its result (or
    None when the file is absent)."""
    files: dict[str, Any] = {}
    values: dict[str, float] = {}
    for name in names:
        spec = METRICS[name]
        path = spec.path(entry)
        if path not in files:
            text = read_text(path)
            if text is None:
                raise NasError(f"the trial's result has no {path} (metric {name})")
            files[path] = json.loads(text)
        values[name] = _number(files[path], spec.keys, f"{path}: {'.'.join(spec.keys)}")
    return values


def _number(data: Any, keys: tuple[str, ...], where: str) -> float:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            raise NasError(f"{where} is missing")
        data = data[key]
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise NasError(f"{where} is {data!r}, not a number")
    return float(data)
