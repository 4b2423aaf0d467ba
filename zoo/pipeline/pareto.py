"""The Pareto picture of the zoo: accuracy against size and against latency, per dataset."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from zoo.client.pareto import is_on_front, pareto_front
from zoo.evaluation.schema import BenchmarkReport

FIELDS = (
    "entry",
    "accuracy",
    "size_kb",
    "b64_latency_ms",
    "sparsity",
    "front_size",
    "front_latency",
)


@dataclass
class Point:
    entry: str
    dataset: str
    accuracy: float
    size_kb: float
    b64_latency_ms: float
    sparsity: float
    front_size: bool = False
    front_latency: bool = False


def collect_points(metrics_dir: Path, bench_dir: Path, datasets: dict[str, str]) -> list[Point]:
    points = []
    for path in sorted(metrics_dir.glob("*.json")):
        bench_path = bench_dir / path.name
        if not bench_path.is_file() or path.stem not in datasets:
            continue
        metrics = json.loads(path.read_text())
        if "accuracy" not in metrics["test"]:
            continue  # a language model: perplexity, not on the accuracy fronts
        bench = BenchmarkReport.from_dict(json.loads(bench_path.read_text()), str(bench_path))
        largest = bench.model.batches[max(bench.model.batches)]
        points.append(
            Point(
                entry=path.stem,
                dataset=datasets[path.stem],
                accuracy=round(metrics["test"]["accuracy"], 6),
                size_kb=round((bench.model.size_bytes or 0) / 1024, 2),
                b64_latency_ms=largest.p50_ms,
                sparsity=bench.model.sparsity or 0.0,
            )
        )
    return points


def mark_fronts(points: list[Point]) -> None:
    for dataset in {p.dataset for p in points}:
        group = [p for p in points if p.dataset == dataset]
        by_size = pareto_front(group, quality=lambda p: p.accuracy, cost=lambda p: p.size_kb)
        by_latency = pareto_front(
            group, quality=lambda p: p.accuracy, cost=lambda p: p.b64_latency_ms
        )
        for p in group:
            p.front_size = is_on_front(p, by_size)
            p.front_latency = is_on_front(p, by_latency)


def points_csv(points: list[Point]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for point in sorted(points, key=lambda p: p.size_kb):
        writer.writerow(asdict(point))
    return buffer.getvalue()
