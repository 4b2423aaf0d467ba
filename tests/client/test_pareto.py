"""The Pareto front against brute force, and 'smallest model with accuracy >= X'."""

from __future__ import annotations

import random

from zoo.client.pareto import cheapest_meeting, pareto_front


def dominated(p: tuple[float, float], others: list[tuple[float, float]]) -> bool:
    cost, quality = p
    return any((c <= cost and q >= quality) and (c < cost or q > quality) for c, q in others)


def test_front_matches_brute_force_on_random_points() -> None:
    rng = random.Random(0)
    for _ in range(200):
        points = [(rng.randint(1, 20), rng.randint(1, 20)) for _ in range(rng.randint(1, 30))]
        front = pareto_front(points, quality=lambda p: p[1], cost=lambda p: p[0])
        expected = {p for p in points if not dominated(p, points)}
        assert set(front) == expected
        assert len(front) == len(set(front))  # exact duplicates appear once
        costs = [p[0] for p in front]
        qualities = [p[1] for p in front]
        assert costs == sorted(costs) and qualities == sorted(qualities)


def test_missing_values_are_left_out() -> None:
    points = [(1.0, None), (None, 0.9), (2.0, 0.5), (float("nan"), 0.99)]
    front = pareto_front(points, quality=lambda p: p[1], cost=lambda p: p[0])
    assert front == [(2.0, 0.5)]


def test_cheapest_meeting_is_the_smallest_model_above_the_threshold() -> None:
    models = [("a", 100, 0.80), ("b", 50, 0.86), ("c", 400, 0.91), ("d", 60, 0.90)]
    pick = cheapest_meeting(models, quality=lambda m: m[2], cost=lambda m: m[1], at_least=0.88)
    assert pick is not None and pick[0] == "d"
    assert (
        cheapest_meeting(models, quality=lambda m: m[2], cost=lambda m: m[1], at_least=0.95) is None
    )
