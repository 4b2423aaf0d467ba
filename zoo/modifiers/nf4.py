"""NF4 storage for a frozen base (QLoRA, arXiv 2305.14314), on bitsandbytes' CPU backend.

bitsandbytes 0.50 runs here without a GPU: `quantize_4bit` / `dequantize_4bit` and
`Linear4bit`'s forward work on CPU tensors (it logs that the optional `kernels` package is
absent and uses its own CPU path), and peft trains LoRA layers over it. So the zoo does not
pack NF4 itself: each weight is stored as 4-bit NF4 indices (two per byte) in blocks of 64
with one absmax per block, and with double quantisation those absmaxes are themselves
8-bit blockwise-quantised (blocks of 256, one float32 absmax each); the layer dequantises
on the fly in its forward. Biases stay float.

One switch is turned off: on a CPU with AVX512-BF16 (this one), `Linear4bit` repacks its
weight, one way, the first time it runs in eval mode without grad, and from then on every
forward, training ones included, takes bitsandbytes' inference kernel (`gemv_4bit`), which
computes in bfloat16 whatever `compute_dtype` says and has no backward. So one evaluation
inside a QLoRA run broke training after it: MiniLM crashed in `matmul_4bit` (`result +=
bias` on the kernel's output while the layer's input needed grad), and had it run, no
gradient would have reached the adapters below a repacked layer. With the switch off the
layer computes the same float32 function in training and in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: QLoRA's block size for the first quantisation (one absmax per 64 weights).
BLOCKSIZE = 64


def nf4_linear(layer: nn.Linear, double_quant: bool = True) -> nn.Linear:
    """An NF4 copy of `layer` (frozen; computes in float32), quantised now on the CPU."""
    import bitsandbytes as bnb

    quantized = bnb.nn.Linear4bit(
        layer.in_features,
        layer.out_features,
        bias=layer.bias is not None,
        compute_dtype=torch.float32,
        compress_statistics=double_quant,
        quant_type="nf4",
    )
    quantized.load_state_dict(layer.state_dict())
    quantized = quantized.to(layer.weight.device)  # `.to` is what quantises a Params4bit
    # No one-way repack to bitsandbytes' bfloat16 inference kernel (see the docstring).
    quantized.support_avx512bf16_for_cpu = False
    for param in quantized.parameters():
        param.requires_grad_(False)
    return quantized


def is_nf4(module: nn.Module) -> bool:
    quant_state = getattr(getattr(module, "weight", None), "quant_state", None)
    return quant_state is not None and getattr(quant_state, "quant_type", None) == "nf4"


@dataclass(frozen=True)
class NF4Bytes:
    """Bytes of the NF4 layers of a model against the same weights in fp32."""

    layers: int
    weights: int  # weight elements stored in NF4
    nf4_bytes: int  # packed indices + absmaxes (+ their second-level absmaxes and code)
    fp32_bytes: int

    @property
    def ratio(self) -> float:
        return self.nf4_bytes / self.fp32_bytes if self.fp32_bytes else 0.0


def _nbytes(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


def nf4_bytes(model: nn.Module) -> NF4Bytes:
    """What the NF4 layers of `model` take, counted from their real storage."""
    layers = weights = stored = 0
    seen: set[int] = set()
    for module in model.modules():
        # A LoRA wrapper shows its base layer's weight as its own: count each weight once.
        if not is_nf4(module) or id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        weight: torch.Tensor = module.weight  # type: ignore[assignment]
        state: Any = weight.quant_state  # type: ignore[attr-defined]
        layers += 1
        count = int(torch.Size(state.shape).numel())
        weights += count
        stored += _nbytes(weight) + _nbytes(state.absmax) + _nbytes(state.code)
        if state.nested:
            stored += _nbytes(state.state2.absmax) + _nbytes(state.state2.code)
    return NF4Bytes(layers, weights, stored, weights * 4)
