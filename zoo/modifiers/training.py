"""Training control: the epoch range and learning-rate schedules.

Learning rates are written into every optimizer param group in `before_step`, so the value
used by step k is the schedule's value at epoch k / steps_per_epoch; nothing is left for a
torch LR scheduler to fight over (do not combine these with your own scheduler). Every
formula is SparseML's (sparseml/pytorch/sparsification/training/modifier_lr.py):

- EpochRangeModifier: states how long training lasts (``manager.max_epochs``).
- SetLearningRateModifier: lr = learning_rate, written once at start_epoch.
- StepLearningRateModifier (SparseML's LearningRateModifier), from init_lr, in epochs:
  StepLR ``init * gamma ** floor((e - start) / step_size)``; MultiStepLR: milestones are
  ABSOLUTE epochs, each strictly inside (start_epoch, end_epoch), ``init * gamma ** (number of
  milestones <= e)``; ExponentialLR ``init * gamma ** floor(e - start)``;
  CosineAnnealingWarmRestarts (lr_kwargs lr_min, cycle_epochs, T_mult) as torch's, stepped
  with ``e - start``.
- SetWeightDecayModifier: weight_decay written once at start_epoch.
- LearningRateFunctionModifier: lr_func linear, cosine or cyclic_linear from init_lr to
  final_lr over [start_epoch, end_epoch]: linear: init + (final - init) * f; cosine: final +
  (init - final) * (1 + cos(pi f)) / 2, with f = (epoch - start) / (end - start);
  cyclic_linear: linear from init towards final within each cycle of cycle_epochs (in steps:
  ``init - (k % cycle) / (cycle - 1) * (init - final)``). At end_epoch the value at end_epoch
  is written once more (final_lr for linear and cosine), as SparseML's last update does.
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

    def lr_at(self, epoch: float, steps_per_epoch: int) -> float | None:
        raise NotImplementedError

    def _write(self, state: ModifierState, epoch: float) -> None:
        lr = self.lr_at(epoch, state.steps_per_epoch)
        if state.optimizer is not None and lr is not None:
            for group in _groups(state, self.param_groups):
                group["lr"] = lr

    def _set(self, state: ModifierState) -> None:
        if self.active(state):
            self._write(state, state.epoch)

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

    def lr_at(self, epoch: float, steps_per_epoch: int) -> float | None:
        return self.learning_rate

    def _set(self, state: ModifierState) -> None:
        # Only at start_epoch: later schedules may take over from the value set here.
        if state.step == state.epoch_to_step(self.epoch_range()[0]):
            super()._set(state)


_NEEDS: dict[str, tuple[str, ...]] = {
    "StepLR": ("step_size",),
    "MultiStepLR": ("milestones",),
    "ExponentialLR": ("gamma",),
    "CosineAnnealingWarmRestarts": ("lr_min", "cycle_epochs"),
}


def _warm_restart_position(elapsed: float, cycle: int, mult: int) -> tuple[float, float]:
    """(epochs into the current cycle, that cycle's length), as torch's scheduler counts."""
    if mult == 1 or elapsed < cycle:
        return elapsed % cycle, float(cycle)
    n = int(math.log(elapsed / cycle * (mult - 1) + 1, mult))
    return elapsed - cycle * (mult**n - 1) / (mult - 1), float(cycle * mult**n)


@dataclass(kw_only=True)
class StepLearningRateModifier(_LearningRate):
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS

    lr_class: Literal["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingWarmRestarts"] = (
        "StepLR"
    )
    lr_kwargs: dict[str, Any] = field(default_factory=dict)
    init_lr: float = 0.1

    def check(self) -> None:
        super().check()
        _check_lr(self, "init_lr", self.init_lr)
        for key in _NEEDS[self.lr_class]:
            if key not in self.lr_kwargs:
                raise self.field_error("lr_kwargs", f"{self.lr_class} needs {key!r}")
        if self.lr_class == "MultiStepLR":
            self._check_milestones()
        if self.lr_class == "CosineAnnealingWarmRestarts":
            for key in ("cycle_epochs", "T_mult"):
                value = self.lr_kwargs.get(key, 1)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise self.field_error(
                        "lr_kwargs", f"{key} must be a whole number >= 1 (torch's), got {value!r}"
                    )

    def _check_milestones(self) -> None:
        # SparseML reads milestones as absolute epochs and refuses those outside the range.
        milestones = self.lr_kwargs["milestones"]
        start, end = self.epoch_range()
        for mile in milestones if isinstance(milestones, list) else [milestones]:
            if not isinstance(mile, int | float) or isinstance(mile, bool):
                raise self.field_error("lr_kwargs", f"milestones must be numbers, got {mile!r}")
            if mile <= start:
                raise self.field_error(
                    "lr_kwargs",
                    f"milestone {mile} is at or before start_epoch {start:g}: milestones are "
                    "absolute epochs (as in SparseML) and must all be after start_epoch",
                )
            if mile >= end:
                raise self.field_error(
                    "lr_kwargs", f"milestone {mile} is at or after end_epoch {end:g}"
                )

    def lr_at(self, epoch: float, steps_per_epoch: int) -> float | None:
        gamma = float(self.lr_kwargs.get("gamma", 0.1))
        elapsed = epoch - self.epoch_range()[0]
        if self.lr_class == "StepLR":
            steps = math.floor(elapsed / float(self.lr_kwargs["step_size"]) + 1e-9)
        elif self.lr_class == "MultiStepLR":
            steps = bisect.bisect_right(sorted(self.lr_kwargs["milestones"]), epoch + 1e-9)
        elif self.lr_class == "ExponentialLR":
            steps = math.floor(elapsed + 1e-9)
        else:
            lr_min = float(self.lr_kwargs["lr_min"])
            into, length = _warm_restart_position(
                elapsed, self.lr_kwargs["cycle_epochs"], self.lr_kwargs.get("T_mult", 1)
            )
            return lr_min + (self.init_lr - lr_min) * (1 + math.cos(math.pi * into / length)) / 2
        return self.init_lr * gamma**steps


@dataclass(kw_only=True)
class LearningRateFunctionModifier(_LearningRate):
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS

    lr_func: Literal["linear", "cosine", "cyclic_linear"] = "linear"
    init_lr: float = 0.1
    final_lr: float = 0.0
    cycle_epochs: float = 1.0  # cyclic_linear only

    def check(self) -> None:
        super().check()
        _check_lr(self, "init_lr", self.init_lr)
        _check_lr(self, "final_lr", self.final_lr)
        if self.end_epoch < 0:
            raise self.field_error("end_epoch", "a learning-rate function needs an end_epoch")
        if self.cycle_epochs <= 0:
            raise self.field_error("cycle_epochs", f"must be > 0, got {self.cycle_epochs}")

    def lr_at(self, epoch: float, steps_per_epoch: int) -> float | None:
        start, end = self.epoch_range()
        if self.lr_func == "cyclic_linear":
            return self._cyclic_linear(epoch, start, end, steps_per_epoch)
        f = 1.0 if end <= start else min(1.0, max(0.0, (epoch - start) / (end - start)))
        if self.lr_func == "cosine":
            return self.final_lr + (self.init_lr - self.final_lr) * (1 + math.cos(math.pi * f)) / 2
        return self.init_lr + (self.final_lr - self.init_lr) * f

    def _cyclic_linear(self, epoch: float, start: float, end: float, spe: int) -> float:
        # SparseML's _cyclic_linear, in steps; the last, shorter cycle keeps the same slope
        # shape over its own length.
        total = (end - start) * spe
        cycle = self.cycle_epochs * spe
        step = (epoch - start) * spe
        if step > int(total / cycle) * cycle:
            cycle = total % cycle
        if cycle <= 1:
            return self.init_lr
        return self.init_lr - (step % cycle) / (cycle - 1) * (self.init_lr - self.final_lr)

    def after_step(self, state: ModifierState) -> None:
        # The step that reaches end_epoch gets the function's end value (final_lr), as
        # SparseML's last update writes it; a schedule starting there overrides it next.
        if state.step == state.epoch_to_step(self.epoch_range()[1]):
            self._write(state, self.epoch_range()[1])


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
