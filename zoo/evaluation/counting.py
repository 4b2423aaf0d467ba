"""Static facts of a model: parameters, non-zeros, and a FLOPs estimate from one forward."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """Every weight tensor, float or quantized (quantized modules keep them off parameters())."""
    tensors: list[torch.Tensor] = []
    for key, value in model.state_dict().items():
        if "running_" in key:  # batch-norm statistics are buffers, not parameters
            continue
        if isinstance(value, torch.Tensor):
            tensors.append(value.dequantize() if value.is_quantized else value)
        elif isinstance(value, tuple):  # packed params of quantized linears: (weight, bias)
            tensors.extend(v.dequantize() if v.is_quantized else v for v in value if v is not None)
    return [t for t in tensors if t.is_floating_point() and t.dim() > 0]


def count_parameters(model: nn.Module) -> int:
    return sum(t.numel() for t in _tensors(model))


def count_nonzero(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(t)) for t in _tensors(model))


def _weight_density(module: nn.Module) -> float:
    weight = getattr(module, "weight", None)
    if callable(weight):  # quantized modules expose weight() as a method
        weight = weight()
    if not isinstance(weight, torch.Tensor) or weight.numel() == 0:
        return 1.0
    if weight.is_quantized:
        weight = weight.dequantize()
    return float(torch.count_nonzero(weight)) / weight.numel()


@torch.no_grad()
def estimate_flops(model: nn.Module, inputs: dict[str, Any]) -> dict[str, int]:
    """Multiply-accumulates of conv and linear layers for one forward of `inputs`, x2.

    `dense` counts every weight; `sparse` counts only non-zero weights, the work a kernel
    that skips zeros would do. Attention's score products are not layers and are left out.
    """
    dense, sparse = 0, 0

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal dense, sparse
        out = output[0] if isinstance(output, tuple) else output
        if not isinstance(out, torch.Tensor):
            return
        out = out.dequantize() if out.is_quantized else out
        info: Any = module  # float and quantized layers share these attribute names
        if hasattr(info, "kernel_size"):  # conv: per output element, cin/groups * k*k MACs
            kh, kw = info.kernel_size
            per_output = (info.in_channels // info.groups) * kh * kw
        else:  # linear: per output element, in_features MACs
            per_output = int(info.in_features)
        macs = out.numel() * per_output
        dense += 2 * macs
        sparse += int(2 * macs * _weight_density(module))

    layer_types = (nn.Conv2d, nn.Linear)
    quantized_names = ("Conv2d", "Linear", "ConvReLU2d", "LinearReLU")
    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, layer_types)
        or (type(m).__module__.startswith("torch.ao.nn") and type(m).__name__ in quantized_names)
    ]
    was_training = model.training
    model.eval()
    try:
        model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {"dense": dense, "sparse": sparse}
