"""Pareto fronts: the models no other model beats on both quality and cost."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

Key = Callable[[T], float | None]


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def pareto_front(items: Iterable[T], *, quality: Key[T], cost: Key[T]) -> list[T]:
    """Items not dominated by another one (higher or equal quality at lower or equal cost).

    Items missing either value are left out: a model without a measured latency cannot
    claim a place on the latency front. The front is returned cheapest first; among
    exact ties (same cost and quality) the first one seen is kept.
    """
    scored: list[tuple[float, float, int, T]] = []
    for position, item in enumerate(items):
        q, c = quality(item), cost(item)
        if _usable(q) and _usable(c):
            scored.append((float(c), -float(q), position, item))  # type: ignore[arg-type]
    scored.sort(key=lambda row: (row[0], row[1], row[2]))
    front: list[T] = []
    best = -math.inf
    for _cost, neg_quality, _position, item in scored:
        if -neg_quality > best:
            front.append(item)
            best = -neg_quality
    return front


def is_on_front(item: T, front: Sequence[T]) -> bool:
    return any(item is member for member in front)


def cheapest_meeting(
    items: Iterable[T], *, quality: Key[T], cost: Key[T], at_least: float
) -> T | None:
    """The lowest-cost item whose quality is at least `at_least` ("smallest model with
    accuracy >= X"), or None. It is always on the Pareto front, so the front answers it."""
    for item in pareto_front(items, quality=quality, cost=cost):
        q = quality(item)
        if q is not None and q >= at_least:
            return item
    return None
