"""CPU latency, throughput and memory of models measured side by side.

Models are timed in interleaved rounds (A, B, A, B, ...) rather than one after the other,
so a slow spell of a shared machine hits every model alike and the ratios stay honest.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import torch
from torch import nn

Inputs = dict[str, torch.Tensor]
MIN_ROUNDS = 5


@dataclass(frozen=True)
class Speed:
    batch_size: int
    p50_ms: float
    p90_ms: float
    throughput: float  # examples per second at the median latency
    peak_memory_mb: float  # resident memory above the pre-forward level, at its peak

    def to_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items() if k != "batch_size"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class _PeakRss:
    """Samples the process's resident memory in a thread while a block runs."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakRss:
        self.base = self.process.memory_info().rss
        self.peak = self.base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def delta_mb(self) -> float:
        return max(0, self.peak - self.base) / 2**20


@torch.inference_mode()
def measure_side_by_side(
    models: dict[str, nn.Module],
    make_inputs: Callable[[int], Inputs],
    batch_sizes: tuple[int, ...] = (1, 64),
    rounds: int = 30,
    warmup: int = 3,
    budget_s: float = 4.0,
) -> dict[str, dict[int, Speed]]:
    """Latency percentiles of every model at every batch size, timed in interleaved rounds.

    At most `rounds` rounds, fewer when a round of all models would take the whole run past
    `budget_s` seconds per batch size (large models), but never fewer than five.
    """
    for model in models.values():
        model.eval()
    results: dict[str, dict[int, Speed]] = {name: {} for name in models}
    for batch_size in batch_sizes:
        inputs = make_inputs(batch_size)
        started = time.perf_counter()
        for model in models.values():
            for _ in range(warmup):
                model(**inputs)
        per_round = (time.perf_counter() - started) / max(1, warmup)
        planned = max(MIN_ROUNDS, min(rounds, int(budget_s / max(per_round, 1e-9))))
        timings: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(planned):
            for name, model in models.items():
                started = time.perf_counter()
                model(**inputs)
                timings[name].append(1000 * (time.perf_counter() - started))
        for name, model in models.items():
            with _PeakRss() as rss:
                model(**inputs)
            p50 = statistics.median(timings[name])
            results[name][batch_size] = Speed(
                batch_size=batch_size,
                p50_ms=round(p50, 4),
                p90_ms=round(_percentile(timings[name], 0.9), 4),
                throughput=round(1000 * batch_size / p50, 2),
                peak_memory_mb=round(rss.delta_mb, 2),
            )
    return results


def speed_table(results: dict[str, dict[int, Speed]], baseline: str) -> dict[str, dict[str, Any]]:
    """Flatten into {model: {b64_p50_ms: ..., b64_speedup: ...}} with ratios to `baseline`."""
    table: dict[str, dict[str, Any]] = {}
    for name, by_batch in results.items():
        row: dict[str, Any] = {}
        for batch_size, speed in by_batch.items():
            row.update(speed.to_dict(prefix=f"b{batch_size}_"))
            base = results[baseline][batch_size].p50_ms
            row[f"b{batch_size}_speedup"] = round(base / speed.p50_ms, 3)
        table[name] = row
    return table
