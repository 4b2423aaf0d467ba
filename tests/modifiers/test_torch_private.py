"""Fails loudly, naming each one, when a torch upgrade moves a private name the int8 code
relies on (zoo/modifiers/quantization/torch_private.py keeps them all in one place)."""

from __future__ import annotations

import torch

from zoo.modifiers.quantization import torch_private


def test_every_private_torch_name_the_int8_code_uses_is_still_there() -> None:
    missing = torch_private.missing_private_names()
    assert not missing, (
        f"torch {torch.__version__} moved {missing}: update "
        "zoo/modifiers/quantization/torch_private.py before relying on QAT or int8 loads"
    )


def test_the_private_helpers_build_what_torch_builds() -> None:
    values = torch.tensor([[1, -2], [3, 4]], dtype=torch.int8)
    per_channel = torch_private.per_channel_quantized(
        values, torch.tensor([0.5, 0.25], dtype=torch.float64), torch.zeros(2, dtype=torch.int64), 0
    )
    assert per_channel.is_quantized and torch.equal(per_channel.int_repr(), values)
    expected = torch.tensor([[0.5, -1.0], [0.75, 1.0]])
    assert torch.equal(per_channel.dequantize(), expected)
    per_tensor = torch_private.per_tensor_quantized(values.to(torch.uint8), 0.5, 0)
    assert per_tensor.q_scale() == 0.5
    assert issubclass(torch_private.conv_bn_qat_type(), torch.nn.Module)
