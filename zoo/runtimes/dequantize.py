"""A static int8 model's float twin: the same layers holding the int8 weights dequantized.

On this CPU ONNX Runtime's int8 convolutions (QLinearConv) are slower than its fp32 ones
for convolutions as narrow as a channel-pruned small CNN's (8 to 32 channels): its fp32
kernels work on blocked NCHWc tensors, its int8 ones need NHWC and a Transpose at each
end. Such an entry runs fastest as its float twin: the entry's weights exactly (each on
its int8 grid), activations in fp32 instead of rounded to int8, so its accuracy stays
within a fraction of a point of the int8 model's (bench/onnx_agreement.py checks it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.ao.nn import intrinsic, quantized

from zoo.errors import OnnxExportError

# Quantize / DeQuantize stubs of torch.ao's eager flow: identities in float.
_STUBS = (quantized.Quantize, quantized.DeQuantize)


def _float_conv(layer: quantized.Conv2d) -> nn.Conv2d:
    bias = layer.bias()
    conv = nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.groups,
        bias=bias is not None,
        padding_mode=layer.padding_mode,
    )
    with torch.no_grad():
        conv.weight.copy_(layer.weight().dequantize())
        if bias is not None and conv.bias is not None:
            conv.bias.copy_(bias)
    return conv


def _float_linear(layer: quantized.Linear) -> nn.Linear:
    from zoo.modifiers.lora import dequantized_linear

    return dequantized_linear(layer)  # type: ignore[arg-type]  # same packed-weight API


def _twin(module: nn.Module) -> nn.Module | None:
    """The float form of one torch.ao int8 module (None: not an int8 module)."""
    # Fused modules subclass the plain ones: test them first.
    if isinstance(module, intrinsic.quantized.ConvReLU2d):
        return nn.Sequential(_float_conv(module), nn.ReLU())
    if isinstance(module, intrinsic.quantized.LinearReLU):
        return nn.Sequential(_float_linear(module), nn.ReLU())
    if isinstance(module, quantized.Conv2d):
        return _float_conv(module)
    if isinstance(module, quantized.Linear):
        return _float_linear(module)
    if isinstance(module, _STUBS):
        return nn.Identity()
    if type(module).__module__.startswith("torch.ao.nn.quantized"):
        raise OnnxExportError(
            type(module).__name__,
            type(module).__name__,
            "an int8 module without a float twin here; run the entry's int8 export instead",
        )
    return None


def float_twin(model: nn.Module) -> nn.Module:
    """A copy of `model` with every static int8 Conv2d / Linear (and their ReLU fusions)
    replaced by a float layer holding its dequantized weights, and torch.ao's quantize
    stubs by identities. `model` itself is left as it is."""
    twin = copy.deepcopy(model).eval()
    replaced: list[str] = []
    for name, module in list(twin.named_modules()):
        if not name or any(name.startswith(f"{done}.") for done in replaced):
            continue  # the root, or a part (packed weights) of a layer already replaced
        replacement = _twin(module)
        if replacement is None:
            continue
        replaced.append(name)
        parent, _, child = name.rpartition(".")
        setattr(twin.get_submodule(parent) if parent else twin, child, replacement)
    return twin
