"""The front of a real Optuna study honours the latency constraint, and its hypervolume is
the area it dominates up to the reference point."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import REPO
from zoo.errors import NasError
from zoo.nas.config import load_search
from zoo.nas.front import FrontTrial, front, hypervolume


def _trial(number: int, accuracy: float, latency: float) -> FrontTrial:
    return FrontTrial(number, {}, [accuracy, latency], {}, f"e{number}", "c" * 40, "s")


def test_hypervolume_is_the_dominated_area() -> None:
    config = load_search("smoke", REPO / "conf" / "search")  # reference (0.0, 50.0)
    # (0.5, 10 ms) and (0.8, 20 ms): 0.5 * 40 + 0.3 * 30
    assert hypervolume(config, [_trial(0, 0.5, 10.0), _trial(1, 0.8, 20.0)]) == pytest.approx(29)
    # a point beyond the reference adds nothing; an empty front has none
    assert hypervolume(config, [_trial(0, 0.5, 10.0), _trial(2, 0.9, 60.0)]) == pytest.approx(20)
    assert hypervolume(config, []) == 0.0


def test_hypervolume_needs_a_reference_for_every_objective() -> None:
    config = load_search("smoke", REPO / "conf" / "search", ["~reference.latency_b1_ms"])
    with pytest.raises(NasError, match=r"reference has no value for \['latency_b1_ms'\]"):
        hypervolume(config, [_trial(0, 0.5, 10.0)])


def test_front_leaves_out_trials_over_the_latency_budget() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, latency, over_budget in ((0.9, 5.0, 1.0), (0.7, 2.0, -1.0), (0.6, 3.0, -1.0)):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("experiment", f"nas-t{trial.number}")
        trial.set_constraint("latency_b1_ms", over_budget)
        study.tell(trial, [accuracy, latency])
    # t0 dominates nothing it may: it breaks the budget; t2 is dominated by t1
    assert [t.number for t in front(study)] == [1]
    assert front(study)[0].experiment == "nas-t1"


def test_front_holds_each_configuration_once() -> None:
    """A configuration asked twice (the same model, from DVC's run cache) is one front
    trial, the earliest: published once."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    space = {"x": optuna.distributions.CategoricalDistribution(["a", "b"])}
    for x, accuracy, latency in (("a", 0.9, 5.0), ("b", 0.7, 2.0), ("a", 0.9, 5.0)):
        study.enqueue_trial({"x": x})
        trial = study.ask(space)
        trial.set_constraint("latency_b1_ms", -1.0)
        study.tell(trial, [accuracy, latency])
    assert len(study.best_trials) == 3
    assert [(t.number, t.params["x"]) for t in front(study)] == [(0, "a"), (1, "b")]
