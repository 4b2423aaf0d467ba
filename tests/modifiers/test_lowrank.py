"""Low-rank factorization: Eckart–Young optimal error, rank choice, trainable afterwards."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.models import get_model
from zoo.modifiers.lowrank import (
    choose_rank,
    factorize,
    factorized_weight,
    ranks_of,
    restructure,
    singular_values,
)
from zoo.recipes import RecipeManager, oneshot, parse_recipe


def _optimum(layer: nn.Module, rank: int) -> float:
    """sqrt(sum of the discarded squared singular values): the best any rank-r can do."""
    s = singular_values(layer)
    return float(s[rank:].pow(2).sum().sqrt())


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_linear_factorization_error_is_the_truncated_svd_optimum(fraction: float) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(96, 64)
    pair, rank = factorize(layer, rank_fraction=fraction)
    assert rank == math.ceil(fraction * 64)
    assert pair[0].weight.shape == (rank, 96) and pair[1].weight.shape == (64, rank)
    error = float((layer.weight - factorized_weight(pair)).norm().detach())
    assert error == pytest.approx(_optimum(layer, rank), rel=1e-4)
    # The pair computes x W_r^T + b: the same function as the layer with W_r.
    x = torch.randn(8, 96)
    expected = F.linear(x, factorized_weight(pair), layer.bias)
    assert torch.allclose(pair(x), expected, atol=1e-5)


def test_conv_factorization_error_is_the_truncated_svd_optimum() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, padding=1, stride=2)
    pair, rank = factorize(conv, rank_fraction=0.25)
    assert pair[0].kernel_size == (3, 3) and pair[0].out_channels == rank
    assert pair[1].kernel_size == (1, 1) and pair[0].stride == (2, 2)
    error = float((conv.weight - factorized_weight(pair)).norm().detach())
    assert error == pytest.approx(_optimum(conv, rank), rel=1e-4)
    x = torch.randn(2, 16, 12, 12)
    expected = F.conv2d(x, factorized_weight(pair), conv.bias, stride=2, padding=1)
    assert torch.allclose(pair(x), expected, atol=1e-5)


def test_energy_threshold_keeps_the_smallest_sufficient_rank() -> None:
    s = torch.tensor([4.0, 2.0, 1.0, 1.0, 0.5])  # squares: 16, 4, 1, 1, 0.25 (total 22.25)
    assert choose_rank(s, energy=16 / 22.25) == 1
    assert choose_rank(s, energy=0.80) == 2  # 20 / 22.25 = 0.899
    assert choose_rank(s, energy=0.95) == 4  # 22 / 22.25 = 0.989; 21 / 22.25 = 0.944 < 0.95
    assert choose_rank(s, energy=1.0) == 5
    assert choose_rank(s, rank_fraction=0.5) == 3


LOWRANK = """
stages:
  factorize:
    run_type: train
    modifiers:
      - type: LowRankModifier
        params: [features.1.weight, features.3.weight]
        energy: 0.6
        start_epoch: 1.0
"""


def test_lowrank_modifier_factorizes_mid_training_and_keeps_training() -> None:
    torch.manual_seed(0)
    model = get_model("mlp", hidden=(64, 64), num_classes=4, in_features=32)
    x = torch.randn(256, 32)
    y = (x[:, :4]).argmax(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    manager = RecipeManager(parse_recipe(LOWRANK))
    manager.modify(model, optimizer, steps_per_epoch=8)
    old = model.features[1].weight

    losses = []
    for i in range(40):
        sl = slice((i * 32) % 256, (i * 32) % 256 + 32)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[sl]), y[sl])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    manager.finalize()

    assert isinstance(model.features[1], nn.Sequential)  # replaced at epoch 1
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(old) not in optimized
    first = model.features[1][0].weight
    assert id(first) in optimized and first.grad is not None
    assert sum(losses[-8:]) < sum(losses[8:16])  # still learning after the swap
    assert set(ranks_of(model)) == {"features.1", "features.3"}

    # The factorized shape is recorded, so a saved state dict loads into a fresh model.
    fresh = get_model("mlp", hidden=(64, 64), num_classes=4, in_features=32)
    restructure(fresh, ranks_of(model)).load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_lowrank_oneshot_skips_layers_it_would_grow() -> None:
    model = get_model("mlp", hidden=(8,), num_classes=4, in_features=8)
    recipe = (
        "stages:\n  s:\n    run_type: oneshot\n    modifiers:\n"
        "      - {type: LowRankModifier, params: __ALL_PRUNABLE__, rank_fraction: 0.9}\n"
    )
    oneshot(model, recipe)
    assert ranks_of(model) == {}  # rank 8 on an 8x8 layer would double its weights
