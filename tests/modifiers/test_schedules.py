"""Schedule tables: every learning-rate modifier type and GMP, step by step, against the
formulas SparseML documents (sparseml/pytorch/sparsification/training/modifier_lr.py,
sparseml/sparsification/modifier_lr.py, sparseml/utils interpolate), written out here on their
own, from the documentation, not from zoo/modifiers/training.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from tests.modifiers.test_pruning import _mlp, _train_steps, _weights, _zeros
from tests.modifiers.test_training import _run
from zoo.recipes import RecipeManager

SPE = 4  # steps per epoch


def _recipe(modifier: str, epochs: float) -> str:
    return (
        "stages:\n  train:\n    modifiers:\n"
        f"      - {{type: EpochRangeModifier, end_epoch: {epochs}}}\n"
        f"      - {modifier}\n"
    )


def _step_lr(e: float) -> float:  # StepLR step_size 2 gamma 0.5 from 1; start 1
    return 0.4 * 0.5 ** math.floor((e - 1) / 2) if e >= 1 else 1.0


def _multistep(e: float) -> float:  # absolute milestones 3, 5; start 2
    if e < 2:
        return 1.0
    return 0.4 * 0.1 ** sum(1 for m in (3, 5) if e >= m)


def _exponential(e: float) -> float:  # gamma 0.8 per epoch; start 1
    return 0.4 * 0.8 ** math.floor(e - 1) if e >= 1 else 1.0


def _warm_restarts(e: float) -> float:  # torch CosineAnnealingWarmRestarts T_0 2, T_mult 1
    t_cur = e % 2
    return 0.001 + (0.4 - 0.001) * (1 + math.cos(math.pi * t_cur / 2)) / 2


def _warm_restarts_mult(e: float) -> float:  # T_0 1, T_mult 2: cycles [0,1), [1,3), [3,7)
    for begin, length in ((0, 1), (1, 2), (3, 4)):
        if begin <= e < begin + length:
            t_cur, t_i = e - begin, length
    return 0.001 + (0.4 - 0.001) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def _linear(e: float) -> float:  # 0.4 -> 0.02 over [1, 5]
    if e < 1:
        return 1.0
    x = min(1.0, (e - 1) / 4)
    return 0.4 + x * (0.02 - 0.4)


def _cosine_down(e: float) -> float:  # 0.4 -> 0.02 over [0, 5]
    x = min(1.0, e / 5)
    return math.cos(math.pi * x) * 0.38 / 2 + 0.38 / 2 + 0.02


def _cosine_up(e: float) -> float:  # 0.02 -> 0.4 over [0, 5]: SparseML shifts by pi
    x = min(1.0, e / 5)
    return math.cos(math.pi * x + math.pi) * 0.38 / 2 + 0.38 / 2 + 0.02


def _cyclic_linear(e: float) -> float:  # 0.4 -> 0.04, cycles of 2 epochs over [0, 5]
    end_step, cycle = 5 * SPE, 2 * SPE
    step = e * SPE
    if step > int(end_step / cycle) * cycle:
        cycle = end_step % cycle
    return 0.4 - (step % cycle) / (cycle - 1) * (0.4 - 0.04)


def _set(e: float) -> float:
    return 0.25 if e >= 1.5 else 1.0


LR_TABLE: dict[str, tuple[str, float, Callable[[float], float]]] = {
    "set": ("{type: SetLearningRateModifier, learning_rate: 0.25, start_epoch: 1.5}", 3, _set),
    "step": (
        "{type: LearningRateModifier, lr_class: StepLR, init_lr: 0.4, start_epoch: 1,"
        " lr_kwargs: {step_size: 2, gamma: 0.5}}",
        7,
        _step_lr,
    ),
    "multi_step": (
        "{type: LearningRateModifier, lr_class: MultiStepLR, init_lr: 0.4, start_epoch: 2,"
        " end_epoch: 6, lr_kwargs: {milestones: [3, 5], gamma: 0.1}}",
        6,
        _multistep,
    ),
    "exponential": (
        "{type: LearningRateModifier, lr_class: ExponentialLR, init_lr: 0.4, start_epoch: 1,"
        " lr_kwargs: {gamma: 0.8}}",
        5,
        _exponential,
    ),
    "linear": (
        "{type: LearningRateFunctionModifier, lr_func: linear, init_lr: 0.4, final_lr: 0.02,"
        " start_epoch: 1, end_epoch: 5}",
        6,
        _linear,
    ),
    "cosine": (
        "{type: LearningRateFunctionModifier, lr_func: cosine, init_lr: 0.4, final_lr: 0.02,"
        " start_epoch: 0, end_epoch: 5}",
        6,
        _cosine_down,
    ),
    "cosine_up": (
        "{type: LearningRateFunctionModifier, lr_func: cosine, init_lr: 0.02, final_lr: 0.4,"
        " start_epoch: 0, end_epoch: 5}",
        6,
        _cosine_up,
    ),
    "cyclic_linear": (
        "{type: LearningRateFunctionModifier, lr_func: cyclic_linear, init_lr: 0.4,"
        " final_lr: 0.04, cycle_epochs: 2, start_epoch: 0, end_epoch: 5}",
        5,
        _cyclic_linear,
    ),
    "cosine_warm_restarts": (
        "{type: LearningRateModifier, lr_class: CosineAnnealingWarmRestarts, init_lr: 0.4,"
        " start_epoch: 0, lr_kwargs: {lr_min: 0.001, cycle_epochs: 2}}",
        6,
        _warm_restarts,
    ),
    "cosine_warm_restarts_t_mult": (
        "{type: LearningRateModifier, lr_class: CosineAnnealingWarmRestarts, init_lr: 0.4,"
        " start_epoch: 0, lr_kwargs: {lr_min: 0.001, cycle_epochs: 1, T_mult: 2}}",
        7,
        _warm_restarts_mult,
    ),
}


@pytest.mark.parametrize("case", sorted(LR_TABLE))
def test_learning_rate_at_every_step_matches_sparseml(case: str) -> None:
    modifier, epochs, formula = LR_TABLE[case]
    used = [g[0] for g in _run(_recipe(modifier, epochs), steps_per_epoch=SPE)]
    assert len(used) == epochs * SPE
    for step, lr in enumerate(used):
        expected = formula(step / SPE)
        assert math.isclose(lr, expected, rel_tol=1e-9, abs_tol=1e-12), (step, lr, expected)


def test_learning_rate_after_end_epoch_is_final_lr() -> None:
    """Old code: the last write happened one step before end_epoch, so the lr that training
    continued with after it was one step short of final_lr."""
    used = [g[0] for g in _run(_recipe(LR_TABLE["linear"][0], 7), steps_per_epoch=SPE)]
    assert used[5 * SPE :] == [pytest.approx(0.02, abs=1e-15)] * (2 * SPE)
    assert used[5 * SPE - 1] > 0.02  # the last step inside the range is still on the ramp


@pytest.mark.parametrize(
    ("inter_func", "shape"),
    [
        ("linear", lambda x: x),
        ("cubic", lambda x: 1 - (1 - x) ** 3),
        ("inverse_cubic", lambda x: 1 - (1 - x) ** (1 / 3)),
    ],
)
def test_gmp_sparsity_at_every_step_matches_sparseml(
    inter_func: str, shape: Callable[[float], float]
) -> None:
    """GMP: updates at start, every update_frequency, and at end; held between them;
    sparsity = init + shape(progress) * (final - init), SparseML's interpolate()."""
    spe, start, end, every = 4, 1.0, 4.0, 0.5
    s_i, s_f = 0.1, 0.75
    recipe = _recipe(
        f"{{type: GMPruningModifier, params: __ALL_PRUNABLE__, init_sparsity: {s_i},"
        f" final_sparsity: {s_f}, start_epoch: {start}, end_epoch: {end},"
        f" update_frequency: {every}, inter_func: {inter_func}}}",
        5,
    )
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=spe)
    for step in range(5 * spe):
        epoch = step / spe
        if epoch < start:
            expected = 0.0
        else:
            last_update = min(end, start + math.floor((epoch - start) / every) * every)
            expected = s_i + shape((last_update - start) / (end - start)) * (s_f - s_i)
        for name, w in _weights(model).items():
            assert abs(_zeros(w) - expected * w.numel()) <= 1, (step, name, expected)
        _train_steps(model, optimizer, 1)
    manager.finalize()
