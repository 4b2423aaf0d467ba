"""Training control: epoch range and learning-rate / weight-decay schedules, step by step."""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.recipes import RecipeManager


def _run(recipe: str, steps_per_epoch: int, groups: int = 1) -> list[list[float]]:
    """The lr of each param group as used by every optimizer step of the recipe."""
    model = nn.Linear(4, 2)
    params = list(model.parameters())
    optimizer = torch.optim.SGD([{"params": [p]} for p in params][:groups], lr=1.0)
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=steps_per_epoch)
    seen: list[list[float]] = []
    # A pre-hook registered after the manager's sees the lr the step is about to use.
    optimizer.register_step_pre_hook(
        lambda opt, *_: seen.append([g["lr"] for g in opt.param_groups])
    )
    for _ in range(round(manager.max_epochs * steps_per_epoch)):
        optimizer.zero_grad()
        model(torch.randn(3, 4)).sum().backward()
        optimizer.step()
    manager.finalize()
    return seen


def test_cosine_and_linear_functions() -> None:
    recipe = """
stages:
  train:
    modifiers:
      - {type: EpochRangeModifier, end_epoch: 4}
      - {type: LearningRateFunctionModifier, lr_func: cosine, init_lr: 0.1, final_lr: 0.01,
         start_epoch: 0, end_epoch: 2}
      - {type: LearningRateFunctionModifier, lr_func: linear, init_lr: 0.01, final_lr: 0.0,
         start_epoch: 2, end_epoch: 4}
"""
    lrs = [g[0] for g in _run(recipe, steps_per_epoch=5)]
    assert len(lrs) == 20
    for step, lr in enumerate(lrs):
        epoch = step / 5
        if epoch < 2:
            expected = 0.01 + 0.09 * (1 + math.cos(math.pi * epoch / 2)) / 2
        else:
            expected = 0.01 * (1 - (epoch - 2) / 2)
        assert math.isclose(lr, expected, rel_tol=1e-9, abs_tol=1e-12), (step, lr, expected)


def test_set_then_multistep_and_param_groups() -> None:
    recipe = """
stages:
  train:
    modifiers:
      - {type: EpochRangeModifier, end_epoch: 6}
      - {type: LearningRateModifier, lr_class: MultiStepLR, init_lr: 0.5,
         lr_kwargs: {milestones: [2, 4], gamma: 0.1}, start_epoch: 0}
      - {type: SetLearningRateModifier, learning_rate: 0.3, start_epoch: 1, param_groups: [1]}
"""
    seen = _run(recipe, steps_per_epoch=2, groups=2)
    first = [g[0] for g in seen]
    assert first == [0.5] * 4 + [0.05] * 4 + [0.005000000000000001] * 4
    second = [g[1] for g in seen]
    # SetLearningRate writes group 1 once at epoch 1; the step schedule rewrites it after.
    assert second[2] == 0.3 and second[0] == 0.5


def test_set_weight_decay_at_epoch() -> None:
    recipe = """
stages:
  train:
    modifiers:
      - {type: EpochRangeModifier, end_epoch: 2}
      - {type: SetWeightDecayModifier, weight_decay: 0.0, start_epoch: 1}
"""
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.5)
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=3)
    decays = []
    for _ in range(6):
        optimizer.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        decays.append(optimizer.param_groups[0]["weight_decay"])
    assert decays == [0.5, 0.5, 0.5, 0.0, 0.0, 0.0]  # step 3 (epoch 1.0) is the first without
    assert manager.num_epochs == 2
