"""Training control: the epoch range and learning-rate schedules.

Learning rates are written into every optimizer param group in `before_step`, so the value
used by step k is the schedule's value at epoch k / steps_per_epoch; nothing is left for a
torch LR scheduler to fight over (do not combine these with your own scheduler).

- EpochRangeModifier: states how long training lasts (``manager.max_epochs``).
- SetLearningRateModifier: lr = learning_rate, written once at start_epoch.
- StepLearningRateModifier (SparseML's LearningRateModifier): lr_class StepLR, MultiStepLR
  or ExponentialLR with lr_kwargs (step_size / milestones in epochs, gamma), from init_lr.
- SetWeightDecayModifier: weight_decay written once at start_epoch.
- LearningRateFunctionModifier: lr_func linear or cosine from init_lr to final_lr over
  [start_epoch, end_epoch]: linear: init + (final - init) * f; cosine: final + (init -
  final) * (1 + cos(pi f)) / 2, with f = (epoch - start) / (end - start).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from zoo.modifiers.base import Modifier, ModifierState

_LOGGING_FIELDS = frozenset({"log_types", "constant_logging"})


class _NoOneShot(Modifier):
    oneshot_capable: ClassVar[bool] = False

    def apply_oneshot(self, state: ModifierState) -> None:
        """Schedules have no meaning without training; a one-shot run skips them."""


@dataclass(kw_only=True)
class EpochRangeModifier(_NoOneShot):
    """Sets the number of training epochs (end_epoch)."""

    def check(self) -> None:
        super().check()
        if self.end_epoch < 0:
            raise self.field_error("end_epoch", "EpochRangeModifier needs an end_epoch >= 0")


def _groups(state: ModifierState, indices: list[int] | None) -> list[dict[str, Any]]:
    assert state.optimizer is not None
    groups = state.optimizer.param_groups
    return groups if indices is None else [groups[i] for i in indices if i < len(groups)]


@dataclass(kw_only=True)
class _LearningRate(_NoOneShot):
    #: optimizer param-group indices to act on (SparseML's param_groups); None = all
    param_groups: list[int] | None = None

    def lr_at(self, epoch: float) -> float | None:
        raise NotImplementedError

    def _set(self, state: ModifierState) -> None:
        if state.optimizer is None or not self.active(state):
            return
        lr = self.lr_at(state.epoch)
        if lr is not None:
            for group in _groups(state, self.param_groups):
                group["lr"] = lr

    def initialize(self, state: ModifierState) -> None:
        self._set(state)

    def before_step(self, state: ModifierState) -> None:
        self._set(state)


def _check_lr(mod: Modifier, name: str, value: float) -> None:
    if value < 0:
        raise mod.field_error(name, f"learning rate must be >= 0, got {value}")


@dataclass(kw_only=True)
class SetLearningRateModifier(_LearningRate):
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS

    learning_rate: float

    def check(self) -> None:
        super().check()
        _check_lr(self, "learning_rate", self.learning_rate)

    def lr_at(self, epoch: float) -> float | None:
        return self.learning_rate

    def _set(self, state: ModifierState) -> None:
        # Only at start_epoch: later schedules may take over from the value set here.
        if state.step == state.epoch_to_step(self.epoch_range()[0]):
            super()._set(state)


@dataclass(kw_only=True)
class StepLearningRateModifier(_LearningRate):
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS

    lr_class: Literal["StepLR", "MultiStepLR", "ExponentialLR"] = "StepLR"
    lr_kwargs: dict[str, Any] = field(default_factory=dict)
    init_lr: float = 0.1

    def check(self) -> None:
        super().check()
        _check_lr(self, "init_lr", self.init_lr)
        need = {"StepLR": "step_size", "MultiStepLR": "milestones", "ExponentialLR": "gamma"}
        if need[self.lr_class] not in self.lr_kwargs:
            raise self.field_error("lr_kwargs", f"{self.lr_class} needs {need[self.lr_class]!r}")

    def lr_at(self, epoch: float) -> float | None:
        gamma = float(self.lr_kwargs.get("gamma", 0.1))
        elapsed = epoch - self.epoch_range()[0]
        if self.lr_class == "StepLR":
            steps = math.floor(elapsed / float(self.lr_kwargs["step_size"]) + 1e-9)
        elif self.lr_class == "MultiStepLR":
            steps = bisect.bisect_right(sorted(self.lr_kwargs["milestones"]), elapsed + 1e-9)
        else:
            steps = math.floor(elapsed + 1e-9)
        return self.init_lr * gamma**steps


@dataclass(kw_only=True)
class LearningRateFunctionModifier(_LearningRate):
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS | {"cycle_epochs"}

    lr_func: Literal["linear", "cosine"] = "linear"
    init_lr: float = 0.1
    final_lr: float = 0.0

    def check(self) -> None:
        super().check()
        _check_lr(self, "init_lr", self.init_lr)
        _check_lr(self, "final_lr", self.final_lr)
        if self.end_epoch < 0:
            raise self.field_error("end_epoch", "a learning-rate function needs an end_epoch")

    def lr_at(self, epoch: float) -> float | None:
        start, end = self.epoch_range()
        f = 1.0 if end <= start else min(1.0, max(0.0, (epoch - start) / (end - start)))
        if self.lr_func == "cosine":
            return self.final_lr + (self.init_lr - self.final_lr) * (1 + math.cos(math.pi * f)) / 2
        return self.init_lr + (self.final_lr - self.init_lr) * f


@dataclass(kw_only=True)
class SetWeightDecayModifier(_NoOneShot):
    """Set the optimizer's weight_decay at start_epoch (SparseML's SetWeightDecayModifier)."""

    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS

    weight_decay: float
    param_groups: list[int] | None = None

    def check(self) -> None:
        super().check()
        if self.weight_decay < 0:
            raise self.field_error("weight_decay", f"must be >= 0, got {self.weight_decay}")

    def _set(self, state: ModifierState) -> None:
        if state.optimizer is not None and state.step == state.epoch_to_step(self.epoch_range()[0]):
            for group in _groups(state, self.param_groups):
                group["weight_decay"] = self.weight_decay

    def initialize(self, state: ModifierState) -> None:
        self._set(state)

    def before_step(self, state: ModifierState) -> None:
        self._set(state)
