"""Every torch-private name the int8 code relies on, behind one module.

torch.ao.quantization is deprecated and its private pieces move between releases. Each one
this package (and zoo/compress/int8.py) uses is reached through here, and
`missing_private_names` lists the ones the installed torch no longer has:
tests/modifiers/test_torch_private.py fails on the first torch upgrade that moves one,
naming it, instead of a QAT run or an int8 load failing somewhere deep later.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

# The forward hook torch.ao's prepare() hangs on a module to observe/fake-quantize its output.
OBSERVER_HOOK = "_observer_forward_hook"
# The method of torch's QAT conv-bn modules that qat_speed.py replaces per instance.
CONV_BN_FORWARD = "_forward_approximate"

_CLASSES = {
    "fused": ("torch.ao.nn.intrinsic.modules.fused", "_FusedModule"),
    "conv_bn_qat": ("torch.ao.nn.intrinsic.qat.modules.conv_fused", "_ConvBnNd"),
}


def _class(key: str) -> Any:
    module, name = _CLASSES[key]
    return getattr(importlib.import_module(module), name)


def fused_module_type() -> type[nn.Module]:
    """torch.ao's base class of fused modules (conv-bn-relu and friends)."""
    cls: type[nn.Module] = _class("fused")
    return cls


def conv_bn_qat_type() -> type[nn.Module]:
    """torch.ao's base class of QAT conv-bn modules."""
    cls: type[nn.Module] = _class("conv_bn_qat")
    return cls


def forward_hooks(module: nn.Module) -> dict[int, Any]:
    """A module's forward hooks, by handle id (torch has no public way to list them)."""
    hooks: dict[int, Any] = module._forward_hooks
    return hooks


def vnni_probe() -> Any:
    """torch's CPU VNNI check, or None where this torch has none."""
    return getattr(torch.cpu, "_is_vnni_supported", None)


def per_channel_quantized(
    values: torch.Tensor, scales: torch.Tensor, zero_points: torch.Tensor, axis: int
) -> torch.Tensor:
    return torch._make_per_channel_quantized_tensor(values, scales, zero_points, axis)


def per_tensor_quantized(values: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    return torch._make_per_tensor_quantized_tensor(values, scale, zero_point)


def missing_private_names() -> list[str]:
    """The private names above that the installed torch lacks (empty when all are there)."""
    missing = []
    for module, name in _CLASSES.values():
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            missing.append(f"{module}.{name}")
    try:
        conv_bn = conv_bn_qat_type()
        if not callable(getattr(conv_bn, CONV_BN_FORWARD, None)):
            missing.append(f"_ConvBnNd.{CONV_BN_FORWARD}")
    except (ImportError, AttributeError):
        pass
    quantize = importlib.import_module("torch.ao.quantization.quantize")
    if not callable(getattr(quantize, OBSERVER_HOOK, None)):
        missing.append(f"torch.ao.quantization.quantize.{OBSERVER_HOOK}")
    for name in ("_make_per_channel_quantized_tensor", "_make_per_tensor_quantized_tensor"):
        if not callable(getattr(torch, name, None)):
            missing.append(f"torch.{name}")
    if vnni_probe() is None:
        missing.append("torch.cpu._is_vnni_supported")
    if not isinstance(getattr(nn.Module(), "_forward_hooks", None), dict):
        missing.append("nn.Module._forward_hooks")
    return missing
