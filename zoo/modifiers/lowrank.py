"""Low-rank approximation: a layer's weight becomes the product of two thinner layers.

Linear: W [out, in] = U S V^T; keeping the top r singular values gives
``Linear(in, r) -> Linear(r, out)`` with weights sqrt(S_r) V_r^T and U_r sqrt(S_r), the
best rank-r approximation in Frobenius norm (Eckart–Young): the error is
sqrt(sum of the discarded s_i^2). Conv2d reshapes W [out, in, k, k] to [out, in*k*k]
first: a k x k conv with r output channels, then a 1x1 conv to `out` (Jaderberg et al.,
2014; Zhang et al., 2015). Splitting sqrt(S) between the two keeps their scales alike,
which trains better than putting S on one side. Both factors stay trainable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from zoo.modifiers.base import ParamSelector, TransformOnceModifier
from zoo.modifiers.selection import ALL_PRUNABLE, select_params


def choose_rank(
    singular_values: torch.Tensor, rank_fraction: float | None = None, energy: float | None = None
) -> int:
    """Rank to keep: a fraction of the full rank (rounded up), or the smallest r whose
    sum of squared singular values reaches `energy` of the total."""
    full = singular_values.numel()
    if (rank_fraction is None) == (energy is None):
        raise ValueError("give exactly one of rank_fraction and energy")
    if rank_fraction is not None:
        return max(1, min(full, math.ceil(rank_fraction * full)))
    assert energy is not None
    power = singular_values.double().pow(2)
    cumulative = power.cumsum(0) / power.sum()
    # The first index whose cumulative energy reaches the threshold (tolerate rounding).
    reached = (cumulative >= energy - 1e-12).nonzero()
    return int(reached[0]) + 1 if reached.numel() else full


def _split(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).float(), (root[:, None] * vh[:rank]).float(), s


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Linear(in, out) -> Sequential(Linear(in, r, no bias), Linear(r, out, bias))."""
    left, right, _ = _split(layer.weight.detach(), rank)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(right)
        second.weight.copy_(left)
        if layer.bias is not None and second.bias is not None:
            second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, second).to(layer.weight.device)


def factorize_conv2d(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """k x k Conv2d(in, out) -> Sequential(k x k Conv2d(in, r), 1x1 Conv2d(r, out, bias))."""
    if conv.groups != 1:
        raise ValueError(f"grouped convolutions (groups={conv.groups}) are not factorized")
    out_ch, in_ch, kh, kw = conv.weight.shape
    left, right, _ = _split(conv.weight.detach().reshape(out_ch, -1), rank)
    first = nn.Conv2d(
        in_ch,
        rank,
        (kh, kw),
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=False,
        padding_mode=conv.padding_mode,
    )
    second = nn.Conv2d(rank, out_ch, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(right.reshape(rank, in_ch, kh, kw))
        second.weight.copy_(left.reshape(out_ch, rank, 1, 1))
        if conv.bias is not None and second.bias is not None:
            second.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, second).to(conv.weight.device)


def weight_of(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight


def factorized_weight(pair: nn.Sequential) -> torch.Tensor:
    """The full weight the two factors represent, shaped like the original layer's."""
    first, second = weight_of(pair[0]), weight_of(pair[1])
    product = second.reshape(second.shape[0], -1) @ first.reshape(first.shape[0], -1)
    return product.reshape(second.shape[0], *first.shape[1:])


def singular_values(layer: nn.Module) -> torch.Tensor:
    weight = weight_of(layer).detach()
    return torch.linalg.svdvals(weight.reshape(weight.shape[0], -1).double())


def factorize(
    layer: nn.Module, rank_fraction: float | None = None, energy: float | None = None
) -> tuple[nn.Sequential, int]:
    """Factorize a Linear or Conv2d to the rank chosen by `rank_fraction` or `energy`."""
    rank = choose_rank(singular_values(layer), rank_fraction, energy)
    if isinstance(layer, nn.Linear):
        return factorize_linear(layer, rank), rank
    if isinstance(layer, nn.Conv2d):
        return factorize_conv2d(layer, rank), rank
    raise TypeError(f"cannot factorize a {type(layer).__name__}; only Linear and Conv2d")


def saves_parameters(layer: nn.Module, rank: int) -> bool:
    """True if the rank-r pair holds fewer weights than the layer."""
    weight = weight_of(layer)
    out_features, fan_in = int(weight.shape[0]), int(weight[0].numel())
    return rank * (fan_in + out_features) < out_features * fan_in


def replace_params_in_optimizer(
    optimizer: torch.optim.Optimizer, old: list[nn.Parameter], new: list[nn.Parameter]
) -> None:
    """Drop `old` parameters from their group (and their state); add `new` to that group,
    so a module swapped mid-training keeps being optimized with the same settings."""
    old_ids = {id(p) for p in old}
    target = optimizer.param_groups[0]
    for group in optimizer.param_groups:
        if any(id(p) in old_ids for p in group["params"]):
            target = group
        group["params"] = [p for p in group["params"] if id(p) not in old_ids]
    for param in old:
        optimizer.state.pop(param, None)
    target["params"].extend(new)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


RANKS_ATTR = "zoo_lowrank_ranks"


def _record(model: nn.Module, ranks: dict[str, int]) -> None:
    recorded = dict(getattr(model, RANKS_ATTR, {}))
    recorded.update(ranks)
    setattr(model, RANKS_ATTR, recorded)


def ranks_of(model: nn.Module) -> dict[str, int]:
    """Module name -> rank of every layer factorized here (saved beside the weights)."""
    return dict(getattr(model, RANKS_ATTR, {}))


def restructure(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Give a fresh float model the factorized shape recorded by `ranks_of`, in place, so a
    saved state dict of the factorized model loads into it."""
    for name, rank in ranks.items():
        layer = model.get_submodule(name)
        pair = factorize_linear(layer, rank) if isinstance(layer, nn.Linear) else None
        if isinstance(layer, nn.Conv2d):
            pair = factorize_conv2d(layer, rank)
        if pair is None:
            raise TypeError(f"{name} is a {type(layer).__name__}, not a Linear or Conv2d")
        _set_submodule(model, name, pair)
    _record(model, ranks)
    return model


@dataclass(kw_only=True)
class LowRankModifier(TransformOnceModifier):
    """Replace the selected Linear/Conv2d layers by SVD factor pairs (trainable).

    Exactly one of `rank_fraction` (keep ceil(f * full rank)) and `energy` (the smallest
    rank keeping that share of the squared singular values). With `only_if_smaller` a
    layer is left alone when the pair would hold more weights than it does. Acts once:
    one-shot, or at `start_epoch` of a train stage (the optimizer is updated in place).
    """

    conflict_group: ClassVar[str | None] = "structure"

    params: ParamSelector | None = ALL_PRUNABLE
    rank_fraction: float | None = None
    energy: float | None = None
    only_if_smaller: bool = True

    def __post_init__(self) -> None:
        self.ranks: dict[str, int] = {}

    def check(self) -> None:
        super().check()
        if (self.rank_fraction is None) == (self.energy is None):
            raise self.field_error("rank_fraction", "give exactly one of rank_fraction and energy")
        for name in ("rank_fraction", "energy"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise self.field_error(name, f"must be in (0, 1], got {value}")

    def apply(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> dict[str, int]:
        """Factorize now; returns module name -> rank kept for each replaced layer."""
        if self.params is None:
            return {}
        chosen = select_params(model, self.params, owner=self.type_name)
        for param_name in chosen:
            name = param_name.rpartition(".")[0]
            layer = model.get_submodule(name)
            if not isinstance(layer, nn.Linear | nn.Conv2d) or getattr(layer, "groups", 1) != 1:
                continue
            pair, rank = factorize(layer, self.rank_fraction, self.energy)
            if self.only_if_smaller and not saves_parameters(layer, rank):
                continue
            old = list(layer.parameters())
            _set_submodule(model, name, pair)
            if optimizer is not None:
                replace_params_in_optimizer(optimizer, old, list(pair.parameters()))
            self.ranks[name] = rank
        self._done = True
        _record(model, self.ranks)
        return dict(self.ranks)
