"""How conditional-computation facts are named in an entry's metrics, and read back.

An entry's metrics are flat tables of scalars ({dataset: {name: value}}), so the two
structured facts are spelled out in names that carry their coordinates:

    expert_load/<layer>/<expert>       share of the layer's routed assignments that went
                                       to that expert (each layer's shares sum to 1)
    exit_sweep/<threshold>/accuracy    early exit: validation accuracy and mean encoder
    exit_sweep/<threshold>/mean_layers layers run per example at that threshold
    exit_threshold                     the chosen operating point (what the model uses)
    exit_max_drop                      the accuracy budget it was chosen under

Torch-free on purpose: the catalog reads these without loading a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The scalar facts, as the entry's metrics carry them (zoo/pipeline/export_stage.py).
FACTS = (
    "total_parameters",
    "active_parameters",
    "mean_layers_executed",
    "expert_load_max",
    "expert_load_min",
    "exit_threshold",
    "exit_max_drop",
)
LOAD_PREFIX = "expert_load/"
SWEEP_PREFIX = "exit_sweep/"
SWEEP_MEASURES = ("accuracy", "mean_layers")


def load_name(layer: str, expert: int) -> str:
    return f"{LOAD_PREFIX}{layer}/{expert}"


def sweep_name(threshold: float, measure: str) -> str:
    return f"{SWEEP_PREFIX}{threshold:.6g}/{measure}"


def is_fact(name: str) -> bool:
    """Is this metric name one of the conditional facts (scalar, histogram or sweep)?"""
    return name in FACTS or name.startswith((LOAD_PREFIX, SWEEP_PREFIX))


def expert_load(metrics: Mapping[str, Any]) -> dict[str, list[float]]:
    """{layer: [share of expert 0, 1, ...]} from one dataset's metrics; names that do not
    parse (a foreign or damaged index) are skipped rather than guessed at."""
    cells: dict[str, dict[int, float]] = {}
    for name, value in metrics.items():
        if not name.startswith(LOAD_PREFIX) or not _is_number(value):
            continue
        layer, _, expert = name[len(LOAD_PREFIX) :].rpartition("/")
        if layer and expert.isdigit():
            cells.setdefault(layer, {})[int(expert)] = float(value)
    return {
        layer: [by_expert[i] for i in range(len(by_expert))]
        for layer, by_expert in sorted(cells.items())
        if sorted(by_expert) == list(range(len(by_expert)))  # experts 0..E-1, no gaps
    }


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    accuracy: float
    mean_layers: float
    chosen: bool


def exit_sweep(metrics: Mapping[str, Any]) -> list[SweepPoint]:
    """The recorded threshold sweep, most layers first; [] when none was recorded."""
    cells: dict[float, dict[str, float]] = {}
    for name, value in metrics.items():
        if not name.startswith(SWEEP_PREFIX) or not _is_number(value):
            continue
        threshold, _, measure = name[len(SWEEP_PREFIX) :].partition("/")
        try:
            key = float(threshold)
        except ValueError:
            continue
        if measure in SWEEP_MEASURES:
            cells.setdefault(key, {})[measure] = float(value)
    recorded = metrics.get("exit_threshold")
    chosen = None
    if isinstance(recorded, int | float) and not isinstance(recorded, bool):
        chosen = float(recorded)
    points = [
        SweepPoint(t, m["accuracy"], m["mean_layers"], chosen is not None and _same(t, chosen))
        for t, m in cells.items()
        if set(m) == set(SWEEP_MEASURES)
    ]
    return sorted(points, key=lambda p: (-p.mean_layers, p.threshold))


def _same(threshold: float, chosen: float) -> bool:
    return f"{threshold:.6g}" == f"{chosen:.6g}"  # as sweep_name spelled it


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
