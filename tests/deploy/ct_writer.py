"""A folder written by compressed-tensors' own compressor, as llm-compressor would write it:
a transformers model, a compressed-tensors scheme applied, weight scales from min / max
(compressed-tensors' calculate_qparams), then ModelCompressor.compress_model,
save_pretrained and update_config. Nothing of the zoo takes part."""

from __future__ import annotations

from pathlib import Path

import torch
from compressed_tensors.compressors import ModelCompressor
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    apply_quantization_config,
)
from compressed_tensors.quantization.utils import calculate_qparams, is_module_quantized
from transformers import AutoModelForSequenceClassification

W8A8 = QuantizationScheme(
    targets=["Linear"],
    weights=QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel"),
    input_activations=QuantizationArgs(
        num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True
    ),
)
W4A16 = QuantizationScheme(
    targets=["Linear"],
    weights=QuantizationArgs(
        num_bits=4, type="int", symmetric=True, strategy="group", group_size=32
    ),
)


def _calibrate_weight(module: torch.nn.Module, args: QuantizationArgs) -> None:
    weight = module.weight.detach()
    rows = weight.reshape(weight.shape[0], -1, args.group_size or weight.shape[1])
    scale, zero_point = calculate_qparams(rows.amin(-1), rows.amax(-1), args)
    module.weight_scale.data.copy_(scale.reshape(module.weight_scale.shape))
    if hasattr(module, "weight_zero_point"):
        module.weight_zero_point.data.copy_(zero_point.reshape(module.weight_zero_point.shape))


def write_with_compressed_tensors(
    model_folder: Path, out: Path, scheme: QuantizationScheme, prune: float = 0.0
) -> Path:
    model = AutoModelForSequenceClassification.from_pretrained(str(model_folder)).eval()
    if prune:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layer." in name:
                weight = module.weight.data
                cut = weight.abs().flatten().kthvalue(int(prune * weight.numel())).values
                weight[weight.abs() <= cut] = 0.0
    config = QuantizationConfig(
        config_groups={"group_0": scheme}, ignore=["classifier"], quantization_status="frozen"
    )
    apply_quantization_config(model, config)
    for module in model.modules():
        if is_module_quantized(module):
            _calibrate_weight(module, module.quantization_scheme.weights)
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    model.save_pretrained(str(out))
    compressor.update_config(str(out))
    return out
