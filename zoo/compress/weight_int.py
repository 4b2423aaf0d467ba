"""The `weight_int` transform: weight-only int layers (GPTQ / round-to-nearest W4A16, W8A16).

config.json: {"type": "weight_int", "bits", "group_size", "method", "layers": {layer: shape}}.
Each quantized layer's weight is stored as its codes, offset to unsigned and bit-packed
(two int4 per byte; int8 one per byte) in ``<layer>.weight_packed``, its float32 scales
in ``<layer>.weight_scale`` ([out, groups]) and, only when GPTQ's group act-order
reordered the groups, each input column's group in ``<layer>.weight_g_idx`` (the names
compressed-tensors uses). Loading dequantizes ``code * scale`` back into the float layer,
so the loaded model computes exactly what the quantized one did, and re-attaches the
record so a loaded model exports to the same bytes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zoo.compress.sparse import pack_bits, unpack_bits
from zoo.compress.transform import Recording, Weights, load_state
from zoo.errors import CompressedFormatError
from zoo.modifiers.quantization import weight_only as wo

_PACKED, _SCALE, _GROUPS = ".weight_packed", ".weight_scale", ".weight_g_idx"


def record(rec: Recording) -> dict[str, Any] | None:
    found = wo.record_of(rec.model)
    if found is None or not found.layers:
        return None
    grid = found.grid
    shapes: dict[str, list[int]] = {}
    # In model order, whatever order the layers were quantized or listed in config.json
    # (written with sorted keys): a loaded model must write the same bytes.
    order = [n for n, _ in rec.model.named_modules() if n in found.layers]
    for name in order:
        layer = found.layers[name]
        weight = rec.model.get_parameter(f"{name}.weight")
        codes = wo.layer_codes(weight, layer, grid, name)
        del rec.state[f"{name}.weight"]
        rec.state[name + _PACKED] = pack_bits(codes.to(torch.int16) - grid.qmin, grid.bits)
        rec.state[name + _SCALE] = layer.scales.float().contiguous()
        if not torch.equal(layer.groups, grid.default_groups(codes.shape[1])):
            rec.state[name + _GROUPS] = layer.groups.to(torch.int32).contiguous()
        shapes[name] = list(weight.shape)
    return {
        "type": "weight_int",
        "bits": grid.bits,
        "group_size": grid.group_size,
        "method": found.method,
        "layers": shapes,
    }


def _grid(transform: dict[str, Any]) -> wo.WeightGrid:
    bits, size = transform.get("bits"), transform.get("group_size")
    if bits not in (4, 8) or not (size is None or (isinstance(size, int) and size > 0)):
        raise CompressedFormatError(
            f"weight_int transform with bits={bits!r}, group_size={size!r}: expected bits 4 "
            "or 8 and a positive group_size or null"
        )
    return wo.WeightGrid(bits, size)


def _take(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CompressedFormatError(f"the weights have no {key!r}, which config.json lists")
    return state.pop(key)


def _layer(
    state: dict[str, torch.Tensor], name: str, shape: list[int], grid: wo.WeightGrid
) -> tuple[torch.Tensor, wo.QuantizedLayer]:
    """One layer's float weight and record, checked against its declared shape."""
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        raise CompressedFormatError(f"weight_int layer {name!r} has a bad shape {shape!r}")
    rows, columns = shape[0], math.prod(shape[1:])
    packed, scales = _take(state, name + _PACKED), _take(state, name + _SCALE)
    groups_count = 1 if grid.group_size is None else columns // grid.group_size
    if packed.dtype != torch.uint8 or packed.numel() != math.ceil(rows * columns * grid.bits / 8):
        raise CompressedFormatError(f"{name}{_PACKED} does not hold {rows}x{columns} codes")
    if scales.shape != (rows, groups_count) or not torch.isfinite(scales).all():
        raise CompressedFormatError(
            f"{name}{_SCALE} is {list(scales.shape)}, expected finite [{rows}, {groups_count}]"
        )
    groups = state.pop(name + _GROUPS, None)
    if groups is None:
        groups = grid.default_groups(columns)
    elif groups.shape != (columns,) or int(groups.min()) < 0 or int(groups.max()) >= groups_count:
        raise CompressedFormatError(f"{name}{_GROUPS} is not a group index per input column")
    codes = unpack_bits(packed, grid.bits, rows * columns).to(torch.int16) + grid.qmin
    layer = wo.QuantizedLayer(scales.float(), groups.long())
    weight = wo.dequantize(codes.reshape(rows, columns), layer).reshape(shape)
    return weight, layer


def load(model: nn.Module, weights: Weights, transform: dict[str, Any]) -> nn.Module:
    grid = _grid(transform)
    layers = transform.get("layers")
    method = transform.get("method")
    if not isinstance(layers, dict) or method not in ("gptq", "rtn"):
        raise CompressedFormatError("weight_int transform needs a layers mapping and a method")
    found = wo.WeightOnlyRecord(grid, method)
    for name, shape in layers.items():
        weight, found.layers[name] = _layer(weights.state, name, shape, grid)
        weights.state[f"{name}.weight"] = weight
    load_state(model, weights.state)
    wo.attach(model, found)
    return model


def quantized_weight_bytes(
    config: dict[str, Any], state: dict[str, torch.Tensor]
) -> tuple[int, int]:
    """(bytes the quantized layers' weights take in a folder's decoded `state`, the same
    weights' fp32 bytes), from its config.json; biases are not counted (they stay float)."""
    entries = (config.get("compression") or {}).get("transforms", [])
    layers: dict[str, list[int]] = next(
        (t["layers"] for t in entries if t.get("type") == "weight_int"), {}
    )
    stored = sum(
        v.numel() * v.element_size()
        for k, v in state.items()
        if k.rpartition(".")[0] in layers and not k.endswith(".bias")
    )
    return stored, sum(4 * math.prod(shape) for shape in layers.values())
