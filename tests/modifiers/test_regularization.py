"""Regularization: the terms' values, their schedule, and what they do to weights in training."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.models import get_model
from zoo.modifiers.regularization import (
    group_lasso_penalty,
    group_norms,
    l1_penalty,
    l2_penalty,
)
from zoo.recipes import RecipeManager, parse_recipe


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return get_model("mlp", hidden=(32,), num_classes=4, in_features=16)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    # Only the first 4 inputs matter: the other 12 input columns' weights are noise.
    y = (x[:, :4] @ torch.randn(4, 4, generator=g)).argmax(1)
    return x, y


def _train(model: nn.Module, recipe: str | None, steps: int = 150) -> nn.Module:
    x, y = _data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    manager = None
    if recipe is not None:
        manager = RecipeManager(parse_recipe(recipe))
        manager.modify(model, optimizer, steps_per_epoch=steps)
    for i in range(steps):
        sl = slice((i * 32) % 256, (i * 32) % 256 + 32)
        optimizer.zero_grad()
        out = model(x[sl])
        loss = F.cross_entropy(out, y[sl])
        if manager is not None:
            loss = manager.loss_update(loss, inputs=x[sl], outputs=out)
        loss.backward()
        optimizer.step()
    return model


def test_penalties_have_their_textbook_values() -> None:
    w = torch.tensor([[3.0, -4.0], [0.0, 1.0]])
    assert float(l1_penalty([w])) == 8.0
    assert float(l2_penalty([w])) == 0.5 * 26.0
    assert torch.allclose(group_norms(w), torch.tensor([5.0, 1.0]))
    assert float(group_lasso_penalty([w, w])) == 12.0
    conv = torch.ones(3, 2, 3, 3)  # one group per output channel: 18 ones each
    assert torch.allclose(group_norms(conv), torch.full((3,), 18**0.5))


GROUP_LASSO = """
stages:
  train:
    modifiers:
      - type: GroupLassoModifier
        params: [features.1.weight]
        weight: 0.1
"""


def test_group_lasso_drives_group_norms_down() -> None:
    plain = _train(_mlp(), None)
    lasso = _train(_mlp(), GROUP_LASSO)
    plain_norms = group_norms(plain.features[1].weight.detach())
    lasso_norms = group_norms(lasso.features[1].weight.detach())
    assert float(lasso_norms.sum()) < 0.5 * float(plain_norms.sum())
    # Whole neurons go quiet, not just weights: many groups near zero vs none without it.
    assert int((lasso_norms < 0.1).sum()) >= 4 > int((plain_norms < 0.1).sum())


@pytest.mark.parametrize(
    ("kind", "measure"),
    [
        ("L1RegularizationModifier", lambda w: float((w.abs() < 1e-2).float().mean())),
        ("L2RegularizationModifier", lambda w: -float(w.norm())),
    ],
)
def test_l1_sparsifies_and_l2_shrinks(kind: str, measure: object) -> None:
    recipe = (
        f"stages:\n  t:\n    modifiers:\n      - {{type: {kind}, params: [features.1.weight], "
        f"weight: {0.01 if kind.startswith('L1') else 0.5}}}\n"
    )
    plain = _train(_mlp(), None).features[1].weight.detach()
    regular = _train(_mlp(), recipe).features[1].weight.detach()
    assert measure(regular) > measure(plain)  # type: ignore[operator]


def test_terms_apply_only_inside_their_epoch_range() -> None:
    model = _mlp()
    recipe = parse_recipe(
        "stages:\n  t:\n    modifiers:\n"
        "      - {type: L1RegularizationModifier, params: __ALL_PRUNABLE__, weight: 0.1,"
        " start_epoch: 1.0, end_epoch: 2.0}\n"
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    manager = RecipeManager(recipe)
    manager.modify(model, optimizer, steps_per_epoch=2)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    base = torch.tensor(1.0)
    seen = []
    for _ in range(6):  # epochs 0, 0.5, 1, 1.5, 2, 2.5
        seen.append(float(manager.loss_update(base).detach()))
        optimizer.step()
    expected_on = 1.0 + 0.1 * float(l1_penalty(weights).detach())
    assert seen[:2] == [1.0, 1.0] and seen[4:] == [1.0, 1.0]
    assert seen[2] == pytest.approx(expected_on) and seen[3] == pytest.approx(expected_on)
