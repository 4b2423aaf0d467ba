"""The driver never spends an experiment on a configuration already evaluated or under way:
the repeated proposal is pruned (pointing at its twin) and the sampler asked again; a space
smaller than the budget is refused before any trial. Real Optuna studies and samplers."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import REPO
from tests.nas.test_config import smoke_raw
from zoo.errors import NasError
from zoo.nas import driver
from zoo.nas.config import load_search, parse_search, space_size

SPACE = {
    "x": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
    "y": optuna.distributions.CategoricalDistribution([1, 2]),
}


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def test_a_repeated_configuration_is_pruned_and_the_sampler_asked_again() -> None:
    study = _study(optuna.samplers.RandomSampler(seed=0))
    logged: list[str] = []
    seen: dict[str, int] = {}
    for _ in range(6):  # the whole space: the later asks must repeat before they find news
        trial = driver._ask_new(study, SPACE, logged.append)
        key = driver.configuration(trial.params)
        assert key not in seen
        seen[key] = trial.number
        if trial.number % 2:  # half told, half still running: both count as evaluated
            study.tell(trial.number, [0.5, 1.0])
    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "a 6-point space asked 6 times at random repeats itself"
    for t in pruned:
        twin = t.user_attrs["same_as"]
        assert seen[driver.configuration(t.params)] == twin < t.number
    assert len(logged) == len(pruned) and "pruned, no experiment" in logged[0]
    fresh = [t for t in trials if t.state != optuna.trial.TrialState.PRUNED]
    assert len(fresh) == 6


def test_an_exhausted_space_stops_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "MAX_REPEATS", 5)
    study = _study(optuna.samplers.RandomSampler(seed=1))
    one = {"x": optuna.distributions.CategoricalDistribution(["a"])}
    driver._ask_new(study, one, lambda _: None)
    with pytest.raises(NasError, match="proposed only configurations already evaluated"):
        driver._ask_new(study, one, lambda _: None)
    assert len(study.get_trials()) == 1 + 5


def test_nsga2_generations_count_only_distinct_trials() -> None:
    """Pruned repeats are not members of a generation: NSGA-II's next generation waits
    for `population` distinct completed trials."""
    sampler = optuna.samplers.NSGAIISampler(population_size=2, seed=0)
    study = _study(sampler)
    for _ in range(5):
        trial = driver._ask_new(study, SPACE, lambda _: None)
        study.tell(trial.number, [len(trial.params["x"]) * 0.1, float(trial.params["y"])])
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    generations = [sampler.get_trial_generation(study, t) for t in complete]
    assert generations == [0, 0, 1, 1, 2]
    assert len({driver.configuration(t.params) for t in complete}) == 5


def test_space_smaller_than_the_budget_is_refused() -> None:
    assert space_size(load_search("smoke", REPO / "conf" / "search")) == 2 * 2 * 2 * 2 * 5
    raw = smoke_raw()
    raw["trials"] = 81
    with pytest.raises(NasError, match="trials is 81 but the space holds only 80 distinct"):
        parse_search(raw, "smoke.yaml")
    raw["space"]["lr"] = {"path": "train.lr", "low": 0.0001, "high": 0.1, "log": True}
    assert parse_search(raw, "smoke.yaml").trials == 81  # a continuous range: unbounded
