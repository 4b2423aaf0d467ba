"""CPU latency and throughput of models measured side by side, with a noise control.

Models are timed in interleaved rounds (each round times every model once, in a
shuffled order) rather than one after the other, so a slow spell of a shared machine
hits every model alike. Ratios are medians of the per-round paired ratios.

The baseline is timed twice per round (`baseline` and its `control` slot): the ratio of
the baseline to itself should be 1.0. When it strays beyond `CONTROL_TOLERANCE`, or a
ratio's spread over the rounds is too wide to read it to half that tolerance, the batch
is measured again with more rounds; if that persists, every figure of the batch is
marked `noisy`, so a busy machine's ratios are never published as fact.
"""

from __future__ import annotations

import math
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
    rounds: int

    @classmethod
    def of(cls, reference: list[float], timed: list[float]) -> PairedRatio:
        ratios = [r / t for r, t in zip(reference, timed, strict=True)]
        median = statistics.median(ratios)
        iqr = _percentile(ratios, 0.75) - _percentile(ratios, 0.25)
        return cls(median, iqr / median if median else float("inf"), len(ratios))

    @property
    def strays(self) -> bool:
        return abs(self.median - 1.0) > CONTROL_TOLERANCE

    @property
    def imprecise(self) -> bool:
        """The median's ~95% interval (a box plot's notch: 1.58 IQR / sqrt(n), McGill et
        al. 1978) is wider than half the tolerance: too few rounds for the noise seen."""
        return 1.58 * self.spread / math.sqrt(self.rounds) > CONTROL_TOLERANCE / 2


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


def _ratios(timings: dict[str, list[float]], baseline: str) -> dict[str, PairedRatio]:
    return {name: PairedRatio.of(timings[baseline], times) for name, times in timings.items()}


def _noisy(ratios: dict[str, PairedRatio]) -> bool:
    """The control strays, or some ratio is too imprecise to be read to the tolerance."""
    return ratios[CONTROL].strays or any(r.imprecise for r in ratios.values())


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
    figures are noisy, up to `remeasures` more passes, each with twice the rounds and
    twice the time budget of the one before.
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
        started = time.perf_counter()
        _time_rounds(slots, inputs, planned, timings, order)
        per_round = (time.perf_counter() - started) / planned
        ratios = _ratios(timings, baseline)
        for attempt in range(remeasures):
            if not _noisy(ratios):
                break
            # Twice the rounds of the pass before, within twice its time budget (a busy
            # machine slows every round: the budget, not the count, bounds the run).
            scale = 2 ** (attempt + 1)
            more = max(MIN_ROUNDS, min(planned * scale, int(budget_s * scale / per_round)))
            _time_rounds(slots, inputs, more, timings, order)
            ratios = _ratios(timings, baseline)
        control, noisy = ratios[CONTROL], _noisy(ratios)
        for name in models:
            ratio = ratios[name]
            p50 = statistics.median(timings[name])
            results[name][batch_size] = BatchFigures(
                p50_ms=round(p50, 4),
                p90_ms=round(_percentile(timings[name], 0.9), 4),
                throughput=round(1000 * batch_size / p50, 2),
                speedup=round(ratio.median, 3),
                control=round(control.median, 3),
                spread=round(ratio.spread, 3),
                noisy=noisy,
            )
    return results
