"""Speed ratios with a noise control: a model against itself is 1.0x, or marked noisy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
import torch

from zoo.evaluation.schema import CONTROL_TOLERANCE, BatchFigures
from zoo.evaluation.speed import measure_side_by_side
from zoo.models import get_model


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("cnn_small", channels=[8, 16]).eval()


def _make_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(1))}


def _against_itself(rounds: int, budget_s: float) -> dict[int, BatchFigures]:
    """The same model timed as model and as baseline; each ratio checked against its control."""
    model = _cnn()
    figures = measure_side_by_side(
        {"model": model, "baseline": model},
        _make_inputs,
        baseline="baseline",
        batch_sizes=(1, 16),
        rounds=rounds,
        warmup=2,
        budget_s=budget_s,
    )
    # The baseline's own row is its paired ratio to itself, exactly 1.
    assert all(b.speedup == 1.0 for b in figures["baseline"].values())
    for size, ours in figures["model"].items():
        assert ours.control is not None and ours.speedup is not None and ours.spread is not None
        assert ours.p50_ms > 0 and ours.throughput > 0
        if abs(ours.control - 1.0) > CONTROL_TOLERANCE:  # a straying control is marked
            assert ours.noisy, (size, ours)
    return figures["model"]


def test_a_model_against_itself_is_one_within_the_bound() -> None:
    for size, ours in _against_itself(rounds=40, budget_s=1.0).items():
        if not ours.noisy:
            assert abs(ours.speedup - 1.0) <= CONTROL_TOLERANCE, (size, ours)  # type: ignore[operator]


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """Busy second processes (one per core) spinning while the benchmark runs."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        deadline = time.monotonic() + 10
        # Start measuring only once every spinner is really burning CPU.
        while any(psutil.Process(p.pid).cpu_times().user < 0.05 for p in procs):
            assert time.monotonic() < deadline, "the busy processes did not start"
            time.sleep(0.01)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_busy_machine_stays_within_the_bound_or_is_marked_noisy(busy_machine: None) -> None:
    for size, ours in _against_itself(rounds=20, budget_s=0.25).items():
        if not ours.noisy:  # published as fact: the ratio itself must be near 1 too
            bound = 2 * CONTROL_TOLERANCE + (ours.spread or 0.0)
            assert abs(ours.speedup - 1.0) <= bound, (size, ours)  # type: ignore[operator]


def test_an_unknown_baseline_is_refused() -> None:
    with pytest.raises(KeyError, match="baseline 'dense' is not among"):
        measure_side_by_side({"model": _cnn()}, _make_inputs, baseline="dense")
