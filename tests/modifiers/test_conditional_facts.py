"""Active parameters, layers executed and expert load are measured from real runs."""

from __future__ import annotations

import pytest
import torch

from tests.compress.export_identity import text_inputs
from tests.compress.recipes import recipe
from tests.modifiers.conditional_models import (
    UPCYCLE_CNN,
    bert,
    cnn,
    images,
    scramble_routers,
    with_exits,
)
from zoo.evaluation.conditional import measure_conditional
from zoo.evaluation.conditional_names import exit_sweep, expert_load, sweep_name
from zoo.modifiers.moe import expert_parameters
from zoo.recipes import oneshot


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_a_top1_moe_is_active_in_one_expert_per_example() -> None:
    model = oneshot(cnn(), recipe(UPCYCLE_CNN.replace("top_k: 2", "top_k: 1")))
    scramble_routers(model)
    per_expert = expert_parameters(model.get_submodule("hidden.0"))[0]
    with torch.no_grad():
        out, facts = measure_conditional(model, lambda: model(images(64)))
    assert out.shape == (64, 10)
    assert facts["total_parameters"] == _params(model)
    assert facts["active_parameters"] == pytest.approx(_params(model) - 3 * per_expert)
    assert 0.25 <= facts["expert_load_max"] <= 1.0 and 0.0 <= facts["expert_load_min"] <= 0.25
    # Tracking is off again: a later forward changes no count.
    assert not model.get_submodule("hidden.0").tracking


def test_an_early_exit_model_counts_the_layers_it_skipped() -> None:
    model = with_exits(bert(layers=4), "[1, 2]", "max_prob", 0.0)  # all leave after layer 1
    with torch.no_grad():
        _, facts = measure_conditional(model, lambda: model(**text_inputs()))
    layers = model.encoder.encoder.layer
    skipped = _params(layers[2]) + _params(layers[3])
    skipped += _params(model.exit_heads["2"]) + _params(model.classifier)
    assert facts["mean_layers_executed"] == 2.0
    assert facts["active_parameters"] == pytest.approx(_params(model) - skipped)


def test_a_plain_model_has_no_conditional_facts() -> None:
    model = cnn()
    with torch.no_grad():
        _, facts = measure_conditional(model, lambda: model(images(4)))
    assert facts == {}


def test_the_expert_load_histogram_is_measured_per_layer_and_reads_back() -> None:
    model = oneshot(cnn(), recipe(UPCYCLE_CNN))
    scramble_routers(model)
    with torch.no_grad():
        _, facts = measure_conditional(model, lambda: model(images(64)))
    histogram = expert_load(facts)
    assert list(histogram) == ["hidden.0"] and len(histogram["hidden.0"]) == 4
    assert sum(histogram["hidden.0"]) == pytest.approx(1.0, abs=1e-3)
    assert max(histogram["hidden.0"]) == facts["expert_load_max"]
    # A damaged or foreign name is skipped, not guessed at; a layer with a gap is dropped.
    damaged = {**facts, "expert_load/x/one": 0.5, "expert_load/y/0": 1.0, "expert_load/y/2": 0}
    assert expert_load(damaged) == histogram


def test_the_recorded_sweep_reads_back_with_its_choice() -> None:
    facts = {
        sweep_name(0.0, "accuracy"): 0.9,
        sweep_name(0.0, "mean_layers"): 6.0,
        sweep_name(0.1234567, "accuracy"): 0.89,
        sweep_name(0.1234567, "mean_layers"): 2.5,
        sweep_name(0.5, "accuracy"): 0.7,  # no mean_layers: incomplete, skipped
        "exit_sweep/abc/accuracy": 1.0,
        "exit_threshold": 0.1234567,
    }
    points = exit_sweep(facts)
    assert [(p.threshold, p.mean_layers, p.chosen) for p in points] == [
        (0.0, 6.0, False),
        (0.123457, 2.5, True),
    ]
