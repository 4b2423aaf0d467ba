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
