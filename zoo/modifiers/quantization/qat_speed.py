"""QAT speed-ups: the same values and the same int8 model as torch.ao's QAT, fewer
operations per training step (conv-bn scaling on the weights, fake-quant after pooling)."""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
from torch import nn

from zoo.modifiers.quantization.torch_private import (
    CONV_BN_FORWARD,
    OBSERVER_HOOK,
    conv_bn_qat_type,
    forward_hooks,
    fused_module_type,
)


def _conv_bn_forward_scaling_weights(self: Any, input: torch.Tensor) -> torch.Tensor:
    """torch's `_ConvBnNd._forward_approximate` with the division moved onto the weights.

    torch convolves with the bn-scaled, fake-quantized weights and then divides the whole
    output by the bn scale to undo it; a convolution is linear in each output channel, so
    dividing the (far smaller) weights first gives the same values and gradients and saves
    a divide, its backward and their memory traffic per layer: most of QAT's step overhead
    on a small CNN.
    """
    running_std = torch.sqrt(self.bn.running_var + self.bn.eps)
    scale = (self.bn.weight / running_std).reshape([-1] + [1] * (self.weight.dim() - 1))
    weight = self.weight_fake_quant(self.weight * scale) / scale
    return self.bn(self._conv_forward(input, weight, self.bias))


def speed_up_conv_bn(model: nn.Module) -> None:
    conv_bn = conv_bn_qat_type()
    for module in model.modules():
        if isinstance(module, conv_bn):
            # An instance attribute: convert() still sees torch's own module class.
            setattr(module, CONV_BN_FORWARD, MethodType(_conv_bn_forward_scaling_weights, module))


class _PooledFakeQuant:
    """Forward hook on a max-pool: the fake-quant of the conv before it, on the pooled output.

    Max-pooling commutes with a monotone quantizer, so fake-quantizing after the pool gives
    the values fake-quantizing before it would, on a quarter of the elements. The observer
    sees the same maximum, and after a ReLU its range includes zero either way (torch's
    observers always include zero), so the conv's int8 output parameters do not change.
    Activation fake-quant is most of QAT's step overhead on a small CNN.
    """

    def __init__(self, fake_quant: nn.Module) -> None:
        self.fake_quant = fake_quant

    def __call__(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return self.fake_quant(output)


def _output_of(module: nn.Module) -> nn.Module:
    """The module whose output a container's output is (Identity placeholders skipped)."""
    # Fused modules subclass Sequential too, but run as one layer.
    if isinstance(module, nn.Sequential) and not isinstance(module, fused_module_type()):
        for child in reversed(list(module.children())):
            if not isinstance(child, nn.Identity):
                return _output_of(child)
    return module


def fake_quant_after_pooling(model: nn.Module) -> None:
    import torch.ao.nn.intrinsic.qat as nniqat

    relu_fused = (nniqat.ConvBnReLU1d, nniqat.ConvBnReLU2d, nniqat.ConvReLU1d, nniqat.ConvReLU2d)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        previous: nn.Module | None = None
        for child in seq.children():
            if isinstance(child, nn.Identity):
                continue
            producer = _output_of(previous) if previous is not None else None
            previous = child
            if not isinstance(child, (nn.MaxPool1d, nn.MaxPool2d)):
                continue
            if not isinstance(producer, relu_fused):
                continue
            hooks = forward_hooks(producer)
            observing = [k for k, h in hooks.items() if getattr(h, "__name__", "") == OBSERVER_HOOK]
            if not observing:
                continue
            for key in observing:
                del hooks[key]
            fake_quant = producer.get_submodule("activation_post_process")
            child.register_forward_hook(_PooledFakeQuant(fake_quant))


def drop_pooled_fake_quant(model: nn.Module) -> None:
    """convert() replaces the convs; the pools must not fake-quantize int8 tensors after."""
    for module in model.modules():
        hooks = forward_hooks(module)
        for key in [k for k, h in hooks.items() if isinstance(h, _PooledFakeQuant)]:
            del hooks[key]
