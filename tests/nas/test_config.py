"""A bad study fails before any trial runs (acceptance 5): parsed and composed against the
real conf/ tree, with the error naming what is wrong and where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from zoo.errors import NasError
from zoo.nas.config import (
    _corners,
    check_against_pipeline,
    load_search,
    parse_search,
    trial_overrides,
)
from zoo.nas.driver import run_search

CONF = REPO / "conf"


def smoke_raw() -> dict[str, Any]:
    return yaml.safe_load((CONF / "search" / "smoke.yaml").read_text())


def with_param(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    raw = smoke_raw()
    raw["space"][name] = spec
    return raw


def test_shipped_studies_pass_every_check() -> None:
    for study in ("smoke", "demo", "compare"):
        config = load_search(study, CONF / "search")
        check_against_pipeline(config, CONF)
        assert config.stages == ["benchmark@nas", "evaluate@nas", "export@nas"]


@pytest.mark.parametrize(("low", "high", "word"), [(0.5, 0.5, "empty"), (0.9, 0.5, "inverted")])
def test_empty_or_inverted_range(low: float, high: float, word: str) -> None:
    raw = with_param(
        "sparsity", {"path": "zoo.nas.recipe_variables.sparsity", "low": low, "high": high}
    )
    with pytest.raises(NasError, match=rf"space\.sparsity: the range \[{low}, {high}\] is {word}"):
        parse_search(raw, "smoke.yaml")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"path": "train.lr", "choices": []}, "choices is empty"),
        ({"path": "train.lr", "choices": [0.1, 0.1]}, "duplicates"),
        ({"path": "train.lr", "low": 0.001}, "needs both low and high"),
        ({"path": "train.lr", "low": 0.0, "high": 0.1, "log": True}, "log range needs low > 0"),
        ({"low": 0.0, "high": 0.1}, "needs a `path`"),
        ({"path": "train.lr", "low": 0.0, "high": 0.1, "choices": [1]}, "exactly one of"),
        ({"path": "train.lr", "lows": 0.0}, r"space\.lr\.lows: unknown key"),
    ],
)
def test_malformed_parameters(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(NasError, match=message):
        parse_search(with_param("lr", spec), "smoke.yaml")


def test_unknown_parameter_path_names_the_missing_key() -> None:
    raw = with_param("width", {"path": "model.kwargs.widths", "choices": [8, 16]})
    config = parse_search(raw, "smoke.yaml")
    with pytest.raises(
        NasError, match=r"space\.width: unknown parameter path 'model\.kwargs\.widths'"
    ):
        check_against_pipeline(config, CONF)


def test_recipe_variable_the_recipe_lacks() -> None:
    raw = with_param("bits", {"path": "zoo.nas.recipe_variables.bits", "choices": [2, 4]})
    config = parse_search(raw, "smoke.yaml")
    with pytest.raises(NasError, match=r"\['bits'\] are not variables of .*nas_oneshot_magnitude"):
        check_against_pipeline(config, CONF)


def test_objective_the_pipeline_does_not_produce() -> None:
    raw = smoke_raw()
    raw["objectives"] = {"accuracy": "maximize", "energy_mj": "minimize"}
    with pytest.raises(NasError, match="'energy_mj' is not a metric the pipeline produces"):
        parse_search(raw, "smoke.yaml")
    raw["objectives"] = {"accuracy": "upward"}
    with pytest.raises(NasError, match="'upward' is not one of"):
        parse_search(raw, "smoke.yaml")


def test_objective_measured_at_a_batch_size_the_pipeline_skips() -> None:
    raw = smoke_raw()
    raw["fixed"].append("bench.batch_sizes=[64]")
    config = parse_search(raw, "smoke.yaml")
    with pytest.raises(NasError, match=r"latency_b1_ms: the pipeline measures batch sizes \[64\]"):
        check_against_pipeline(config, CONF)


def test_unknown_study_lists_the_known_ones() -> None:
    with pytest.raises(NasError, match=r"no study 'smok'.*known: compare, demo, smoke"):
        load_search("smok", CONF / "search")


def test_bad_study_fails_before_any_trial_is_asked(tmp_path: Path) -> None:
    """run_search checks first: no journal is written, no DVC command runs (tmp_path is
    not even a DVC repository, so a queued trial would fail differently)."""
    (tmp_path / "conf").symlink_to(CONF)
    raw = with_param("width", {"path": "model.kwargs.widths", "choices": [8, 16]})
    with pytest.raises(NasError, match="unknown parameter path"):
        run_search(parse_search(raw, "smoke.yaml"), tmp_path)
    assert not (tmp_path / ".nas").exists()


def test_trial_overrides_compose_into_the_trial_pipeline() -> None:
    """The overrides a trial hands `dvc exp run -S` compose (Hydra) into the values asked."""
    from zoo.pipeline.compose import compose

    config = load_search("smoke", CONF / "search")
    params = {
        "channels": "[4,8]",
        "kernel_size": 5,
        "hidden": "[16]",
        "compression": "pruned",
        "sparsity": 0.7,
    }
    overrides = trial_overrides(config, params)
    assert "++zoo.nas.recipe_variables.sparsity=0.7" in overrides
    composed = compose(CONF, overrides)
    assert composed["model"]["kwargs"] == {
        "channels": [4, 8],
        "head": "flatten",
        "hidden": [16],
        "kernel_size": 5,
    }
    entry = composed["zoo"]["nas"]
    assert entry["flow"] == "oneshot" and entry["recipe_variables"] == {"sparsity": 0.7}
    assert composed["data"]["name"] == "digits" and list(composed["zoo"]) == ["nas"]
    assert len(_corners(config)) == 3  # first, last, and the `pruned` preset at first


def test_cli_refuses_a_bad_budget_and_a_study_never_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.cli import main

    (tmp_path / "conf").symlink_to(CONF)
    assert main(["nas", "run", "smoke", "trials=0", "--repo", str(tmp_path)]) == 2
    assert "trials must be >= 1, got 0" in capsys.readouterr().err
    assert main(["nas", "status", "smoke", "--repo", str(tmp_path)]) == 2
    assert "study smoke-nsga2 has not run yet" in capsys.readouterr().err
    assert not (tmp_path / ".nas").exists()
