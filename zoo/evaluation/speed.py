"""CPU latency and throughput of models measured side by side, with a noise control.

Models are timed in interleaved rounds (each round times every model once, in a
shuffled order) rather than one after the other, so a slow spell of a shared machine
hits every model alike. Ratios are medians of the per-round paired ratios.

The baseline is timed twice per round (`baseline` and its `control` slot): the ratio of
the baseline to itself should be 1.0. When it strays beyond `CONTROL_TOLERANCE` the
batch is measured again with more rounds; if it still strays, every figure of that batch
is marked `noisy`, so a busy machine's ratios are never published as fact.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from zoo.evaluation.schema import CONTROL_TOLERANCE, BatchFigures

Inputs = dict[str, torch.Tensor]
MIN_ROUNDS = 5
CONTROL = "\0control"  # the baseline's second slot; no model name can clash with it


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class PairedRatio:
    """Median and relative spread of per-round ratios `reference time / model time`."""

    median: float
    spread: float  # interquartile range over the median

    @classmethod
    def of(cls, reference: list[float], timed: list[float]) -> PairedRatio:
        ratios = [r / t for r, t in zip(reference, timed, strict=True)]
        median = statistics.median(ratios)
        iqr = _percentile(ratios, 0.75) - _percentile(ratios, 0.25)
        return cls(median, iqr / median if median else float("inf"))

    @property
    def strays(self) -> bool:
        return abs(self.median - 1.0) > CONTROL_TOLERANCE


def _time_rounds(
    slots: dict[str, nn.Module],
    inputs: Inputs,
    rounds: int,
    timings: dict[str, list[float]],
    order: random.Random,
) -> None:
    names = list(slots)
    for _ in range(rounds):
        order.shuffle(names)  # no model always runs right after another (cache, clocks)
        for name in names:
            started = time.perf_counter()
            slots[name](**inputs)
            timings[name].append(1000 * (time.perf_counter() - started))


@torch.inference_mode()
def measure_side_by_side(
    models: dict[str, nn.Module],
    make_inputs: Callable[[int], Inputs],
    baseline: str,
    batch_sizes: tuple[int, ...] = (1, 64),
    rounds: int = 30,
    warmup: int = 3,
    budget_s: float = 4.0,
    remeasures: int = 2,
    seed: int = 0,
) -> dict[str, dict[int, BatchFigures]]:
    """Latency of every model at every batch size, with ratios to `models[baseline]`.

    At most `rounds` rounds, fewer when the rounds would take the whole run past
    `budget_s` seconds per batch size (large models), but never fewer than five. When the
    control strays, up to `remeasures` more passes, each adding twice as many rounds.
    """
    if baseline not in models:
        raise KeyError(f"baseline {baseline!r} is not among the models {sorted(models)}")
    for model in models.values():
        model.eval()
    slots = {**models, CONTROL: models[baseline]}
    order = random.Random(seed)
    results: dict[str, dict[int, BatchFigures]] = {name: {} for name in models}
    for batch_size in batch_sizes:
        inputs = make_inputs(batch_size)
        started = time.perf_counter()
        for _ in range(warmup):
            for model in models.values():
                model(**inputs)
        per_round = (time.perf_counter() - started) / max(1, warmup) * len(slots) / len(models)
        planned = max(MIN_ROUNDS, min(rounds, int(budget_s / max(per_round, 1e-9))))
        timings: dict[str, list[float]] = {name: [] for name in slots}
        _time_rounds(slots, inputs, planned, timings, order)
        control = PairedRatio.of(timings[baseline], timings[CONTROL])
        for attempt in range(remeasures):
            if not control.strays:
                break
            _time_rounds(slots, inputs, planned * 2 ** (attempt + 1), timings, order)
            control = PairedRatio.of(timings[baseline], timings[CONTROL])
        for name in models:
            ratio = PairedRatio.of(timings[baseline], timings[name])
            p50 = statistics.median(timings[name])
            results[name][batch_size] = BatchFigures(
                p50_ms=round(p50, 4),
                p90_ms=round(_percentile(timings[name], 0.9), 4),
                throughput=round(1000 * batch_size / p50, 2),
                speedup=round(ratio.median, 3),
                control=round(control.median, 3),
                spread=round(ratio.spread, 3),
                noisy=control.strays,
            )
    return results
