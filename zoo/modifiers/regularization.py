"""Regularization terms added to the loss on a schedule: L1, L2 and group lasso.

Group lasso sums the L2 norms of groups (one group per output channel / neuron, i.e. per
row of the weight viewed as [out, -1]). Its gradient pulls whole groups to zero together,
which is what structured pruning then removes (Yuan & Lin, 2006; Wen et al., 2016).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.modifiers.base import Modifier, ModifierState, ParamSelector
from zoo.modifiers.selection import ALL_PRUNABLE, select_params


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum of absolute values."""
    return torch.stack([p.abs().sum() for p in params]).sum()


def l2_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Half the sum of squares (its gradient is the weight itself, like weight decay)."""
    return 0.5 * torch.stack([p.pow(2).sum() for p in params]).sum()


def group_norms(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output channel / neuron (rows of the weight as [out, -1])."""
    return weight.reshape(weight.shape[0], -1).norm(dim=1)


def group_lasso_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum over tensors and output groups of the groups' L2 norms."""
    return torch.stack([group_norms(p).sum() for p in params]).sum()


@dataclass(kw_only=True)
class _RegularizationModifier(Modifier):
    """`loss += weight * penalty(selected params)` while active, i.e. in [start, end)."""

    field_aliases: ClassVar[dict[str, str]] = {"alpha": "weight"}

    params: ParamSelector | None = ALL_PRUNABLE
    weight: float = 1e-4

    def __post_init__(self) -> None:
        self._params: list[nn.Parameter] = []

    def check(self) -> None:
        super().check()
        if self.weight < 0:
            raise self.field_error("weight", f"must be >= 0, got {self.weight}")

    def penalty(self, params: list[nn.Parameter]) -> torch.Tensor:
        raise NotImplementedError

    def targets(self, model: nn.Module) -> list[str]:
        # Regularization only adds a loss term; it writes no parameter, so it conflicts
        # with nothing (a pruning modifier may hold masks on the same weights).
        return []

    def initialize(self, state: ModifierState) -> None:
        if self.params is not None:
            chosen = select_params(state.model, self.params, owner=self.type_name)
            self._params = list(chosen.values())

    def loss_update(
        self, loss: torch.Tensor, state: ModifierState, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        if not self.active(state) or not self._params or self.weight == 0:
            return loss
        return loss + self.weight * self.penalty(self._params)


@dataclass(kw_only=True)
class L1RegularizationModifier(_RegularizationModifier):
    """L1 (lasso) on the selected parameters: drives individual weights to zero."""

    def penalty(self, params: list[nn.Parameter]) -> torch.Tensor:
        return l1_penalty(params)


@dataclass(kw_only=True)
class L2RegularizationModifier(_RegularizationModifier):
    """L2 (ridge) on the selected parameters: 0.5 * weight * sum of squares."""

    def penalty(self, params: list[nn.Parameter]) -> torch.Tensor:
        return l2_penalty(params)


@dataclass(kw_only=True)
class GroupLassoModifier(_RegularizationModifier):
    """Group lasso: the sum of per-output-channel L2 norms, for structured sparsity."""

    def penalty(self, params: list[nn.Parameter]) -> torch.Tensor:
        return group_lasso_penalty(params)
