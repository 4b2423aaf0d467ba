"""Structured pruning that physically removes units: conv channels, MLP neurons, heads.

- ``structure: channel`` / ``neuron``: the selected Conv2d / Linear layers lose their
  lowest-scoring output units (score: L2 norm of the unit's weights, times |gamma| of a
  BatchNorm that follows). The units are removed from the layer, from the BatchNorm that
  follows it, and from the input of the next consumer: the next Conv2d / Linear in module
  order whose input width equals the layer's output width (or, after a conv, a Linear
  reading the flattened NCHW map: k inputs per channel). This follows the data flow of
  sequential networks (cnn_small, mlp, BERT's FFN ``intermediate.dense`` -> ``output.dense``);
  a layer whose output feeds a residual addition must not be selected, and a layer with no
  consumer (the final classifier) is left as it is.
- ``structure: head``: attention heads of BERT-style self-attention (``query``/``key``/
  ``value`` + the parent's ``output.dense``) are removed per layer, lowest norm first.
  transformers 5 dropped ``prune_heads``, so the slicing is done here.

Removing a unit whose weights (and BatchNorm scale and shift) are zero leaves the model's
outputs unchanged; the tests check exactly that. Runs one-shot only: a smaller layer needs
a new optimizer, so prune structurally first, then build the optimizer and fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from zoo.errors import RecipeError
from zoo.modifiers.base import Modifier, ModifierState, ParamSelector
from zoo.modifiers.selection import ALL_PRUNABLE, select_params

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _sliced_weight(
    layer: nn.Linear | nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> torch.Tensor:
    weight = layer.weight.detach()
    if out_idx is not None:
        weight = weight[out_idx]
    if in_idx is not None:
        weight = weight[:, in_idx]
    return weight


def _fill_sliced(
    new: nn.Linear | nn.Conv2d,
    layer: nn.Linear | nn.Conv2d,
    weight: torch.Tensor,
    out_idx: torch.Tensor | None,
) -> None:
    """Copy the kept weights (and the kept outputs' biases) into the smaller layer."""
    with torch.no_grad():
        new.weight.copy_(weight)
        if layer.bias is not None and new.bias is not None:
            bias = layer.bias.detach()
            new.bias.copy_(bias[out_idx] if out_idx is not None else bias)


def _slice_linear(
    layer: nn.Linear, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> nn.Linear:
    weight = _sliced_weight(layer, out_idx, in_idx)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None)
    new = new.to(dtype=weight.dtype, device=weight.device)
    _fill_sliced(new, layer, weight, out_idx)
    return new


def _slice_conv(
    layer: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> nn.Conv2d:
    if layer.groups != 1:
        raise RecipeError(
            "structured pruning of grouped convolutions is not supported", field="params"
        )
    weight = _sliced_weight(layer, out_idx, in_idx)
    new = nn.Conv2d(
        weight.shape[1],
        weight.shape[0],
        layer.kernel_size,  # type: ignore[arg-type]
        stride=layer.stride,  # type: ignore[arg-type]
        padding=layer.padding,  # type: ignore[arg-type]
        dilation=layer.dilation,  # type: ignore[arg-type]
        bias=layer.bias is not None,
        padding_mode=layer.padding_mode,
    ).to(dtype=weight.dtype, device=weight.device)
    _fill_sliced(new, layer, weight, out_idx)
    return new


def _slice_bn(bn: nn.Module, idx: torch.Tensor) -> nn.Module:
    assert isinstance(bn, _BN)
    new = type(bn)(
        len(idx),
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
    )
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight.detach()[idx])
            new.bias.copy_(bn.bias.detach()[idx])
        if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
            assert new.running_mean is not None and new.running_var is not None
            new.running_mean.copy_(bn.running_mean[idx])
            new.running_var.copy_(bn.running_var[idx])
            if bn.num_batches_tracked is not None and new.num_batches_tracked is not None:
                new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def _width_out(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features  # type: ignore[return-value]


def _width_in(module: nn.Module) -> int | None:
    if isinstance(module, nn.Conv2d):
        return module.in_channels
    if isinstance(module, nn.Linear):
        return module.in_features
    return None


def _followers(model: nn.Module, name: str) -> tuple[list[str], str | None, int]:
    """(BatchNorms right after `name`, the consumer, inputs per unit) in module order.

    A conv followed (after flattening) by a Linear feeds it ``k = in_features / channels``
    inputs per channel, contiguous in NCHW order.
    """
    modules = list(model.named_modules())
    position = next(i for i, (n, _) in enumerate(modules) if n == name)
    layer = modules[position][1]
    width = _width_out(layer)
    norms: list[str] = []
    for other, module in modules[position + 1 :]:
        if isinstance(module, _BN) and module.num_features == width and not norms:
            norms.append(other)
            continue
        width_in = _width_in(module)
        if width_in is None:
            continue
        if width_in == width:
            return norms, other, 1
        if isinstance(layer, nn.Conv2d) and isinstance(module, nn.Linear) and width_in % width == 0:
            return norms, other, width_in // width
        return norms, None, 1
    return norms, None, 1


def unit_scores(model: nn.Module, name: str) -> torch.Tensor:
    weight = model.get_submodule(name).get_parameter("weight").detach()
    score = weight.reshape(weight.shape[0], -1).norm(dim=1)
    norms, _, _ = _followers(model, name)
    if norms:
        bn = model.get_submodule(norms[0])
        if getattr(bn, "affine", False):
            score = score * bn.weight.detach().abs()  # type: ignore[operator]
    return score


def remove_units(model: nn.Module, name: str, keep: torch.Tensor) -> bool:
    """Keep only output units `keep` (sorted indices) of layer `name`; False if no consumer."""
    layer = model.get_submodule(name)
    norms, consumer, per_unit = _followers(model, name)
    if consumer is None:
        return False
    keep = keep.sort().values
    inputs = (keep[:, None] * per_unit + torch.arange(per_unit)).reshape(-1)
    if isinstance(layer, nn.Conv2d):
        _set_submodule(model, name, _slice_conv(layer, keep, None))
    elif isinstance(layer, nn.Linear):
        _set_submodule(model, name, _slice_linear(layer, keep, None))
    else:
        raise RecipeError(f"cannot remove units of {type(layer).__name__} {name!r}", field="params")
    for norm in norms:
        _set_submodule(model, norm, _slice_bn(model.get_submodule(norm), keep))
    target = model.get_submodule(consumer)
    if isinstance(target, nn.Conv2d):
        _set_submodule(model, consumer, _slice_conv(target, None, inputs))
    else:
        assert isinstance(target, nn.Linear)
        _set_submodule(model, consumer, _slice_linear(target, None, inputs))
    return True


def attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(self-attention name, module, output projection name) for BERT-style attention."""
    found = []
    for name, module in model.named_modules():
        if all(
            isinstance(getattr(module, a, None), nn.Linear) for a in ("query", "key", "value")
        ) and hasattr(module, "attention_head_size"):
            parent = name.rpartition(".")[0]
            out = f"{parent}.output.dense" if parent else "output.dense"
            try:
                model.get_submodule(out)
            except AttributeError:
                continue
            found.append((name, module, out))
    return found


def remove_heads(model: nn.Module, attn_name: str, out_name: str, keep_heads: list[int]) -> None:
    attn = model.get_submodule(attn_name)
    size = int(attn.attention_head_size)  # type: ignore[arg-type]
    idx = torch.cat([torch.arange(h * size, (h + 1) * size) for h in sorted(keep_heads)])
    for proj in ("query", "key", "value"):
        setattr(attn, proj, _slice_linear(getattr(attn, proj), idx, None))
    out = model.get_submodule(out_name)
    assert isinstance(out, nn.Linear)
    _set_submodule(model, out_name, _slice_linear(out, None, idx))
    # the attention forward infers heads from shapes; keep its bookkeeping consistent
    attn.__dict__["num_attention_heads"] = len(keep_heads)
    attn.__dict__["all_head_size"] = len(keep_heads) * size


def head_scores(model: nn.Module, attn_name: str, out_name: str) -> torch.Tensor:
    attn = model.get_submodule(attn_name)
    size = int(attn.attention_head_size)  # type: ignore[arg-type]
    rows = sum(
        getattr(attn, p)
        .weight.detach()
        .reshape(-1, size, getattr(attn, p).weight.shape[1])
        .pow(2)
        .sum((1, 2))
        for p in ("query", "key", "value")
    )
    out_w = model.get_submodule(out_name).get_parameter("weight").detach()
    cols = out_w.reshape(out_w.shape[0], -1, size).pow(2).sum((0, 2))
    return (rows + cols).sqrt()


@dataclass(kw_only=True)
class StructuredPruningModifier(Modifier):
    """Remove a fraction of channels / neurons / heads per selected layer (one-shot)."""

    conflict_group: ClassVar[str | None] = "sparsity"
    oneshot_capable: ClassVar[bool] = True

    params: ParamSelector | None = ALL_PRUNABLE
    sparsity: float = 0.5
    structure: Literal["channel", "neuron", "head"] = "channel"

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.sparsity < 1.0:
            raise self.field_error("sparsity", f"sparsity must be in [0, 1), got {self.sparsity}")

    def targets(self, model: nn.Module) -> list[str]:
        if self.structure == "head":
            return [f"{n}.query.weight" for n, _, _ in attention_blocks(model)]
        return super().targets(model)

    def initialize(self, state: ModifierState) -> None:
        raise RecipeError(
            "structured pruning changes tensor shapes; run it in a oneshot stage, then "
            "build the optimizer for the smaller model",
            modifier=self.type_name,
            field="run_type",
        )

    def apply_oneshot(self, state: ModifierState) -> None:
        model = state.model
        if self.structure == "head":
            blocks = attention_blocks(model)
            if not blocks:
                raise self.field_error("structure", "the model has no BERT-style attention")
            for attn_name, attn, out_name in blocks:
                heads = int(attn.num_attention_heads)  # type: ignore[arg-type]
                drop = min(heads - 1, round(self.sparsity * heads))
                order = head_scores(model, attn_name, out_name).argsort(descending=True)
                remove_heads(model, attn_name, out_name, order[: heads - drop].tolist())
            return
        selector = self.params if self.params is not None else ALL_PRUNABLE
        names = [n.rpartition(".")[0] for n in select_params(model, selector, owner=self.type_name)]
        for name in names:
            layer = model.get_submodule(name)
            if not isinstance(layer, nn.Linear | nn.Conv2d):
                continue
            width = _width_out(layer)
            drop = min(width - 1, round(self.sparsity * width))
            keep = unit_scores(model, name).argsort(descending=True)[: width - drop]
            remove_units(model, name, keep)
