"""Int8 models as safetensors + JSON: int8 values, scales and zero points; no pickle.

`quantized_state(model)` splits a converted model's state dict into plain tensors (int8 /
uint8 values, float64 scales, int64 zero points, float biases) and a JSON-able config
that says how to put them back together: each quantized tensor's scheme, dtype and axis,
plus the `QuantPlan` (fusions, wrapped regions, dynamic layers) that rebuilds the module
structure. `build_quantized(skeleton, tensors, config)` redoes the plan on a fresh float
model of the same architecture, converts it without calibration and loads the tensors,
so every scale and zero point comes from the file, none from the placeholder observers.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from zoo.errors import CheckpointError
from zoo.fsutil import atomic_dir, sha256_file
from zoo.modifiers import quantization as q
from zoo.tensorfile import save_tensor_file

FORMAT = "zoo-int8/1"
WEIGHTS = "model.safetensors"
CONFIG = "quantization.json"
_SCALES = ".__scales"
_ZERO_POINTS = ".__zero_points"
_SCALE = ".__scale"
_ZERO_POINT = ".__zero_point"


def _encode(key: str, value: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    if isinstance(value, torch.Tensor) and value.is_quantized:
        dtype = str(value.dtype).removeprefix("torch.")
        tensors[key] = value.int_repr().contiguous()
        if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            tensors[key + _SCALES] = value.q_per_channel_scales().contiguous()
            tensors[key + _ZERO_POINTS] = value.q_per_channel_zero_points().contiguous()
            return {"kind": "per_channel", "dtype": dtype, "axis": value.q_per_channel_axis()}
        tensors[key + _SCALE] = torch.tensor(value.q_scale(), dtype=torch.float64)
        tensors[key + _ZERO_POINT] = torch.tensor(value.q_zero_point(), dtype=torch.int64)
        return {"kind": "per_tensor", "dtype": dtype}
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().contiguous().clone()
        return {"kind": "tensor"}
    if isinstance(value, tuple | list):
        return {
            "kind": "tuple",
            "items": [_encode(f"{key}.{i}", v, tensors) for i, v in enumerate(value)],
        }
    if isinstance(value, torch.dtype):
        return {"kind": "dtype", "value": str(value).removeprefix("torch.")}
    if value is None:
        return {"kind": "none"}
    raise TypeError(f"cannot serialise state entry {key!r} of type {type(value).__name__}")


def _decode(key: str, entry: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    kind = entry["kind"]
    if kind == "tensor":
        return tensors[key]
    if kind == "per_channel":
        return torch._make_per_channel_quantized_tensor(
            tensors[key], tensors[key + _SCALES], tensors[key + _ZERO_POINTS], entry["axis"]
        )
    if kind == "per_tensor":
        return torch._make_per_tensor_quantized_tensor(
            tensors[key], float(tensors[key + _SCALE]), int(tensors[key + _ZERO_POINT])
        )
    if kind == "tuple":
        return tuple(_decode(f"{key}.{i}", e, tensors) for i, e in enumerate(entry["items"]))
    if kind == "dtype":
        return getattr(torch, entry["value"])
    if kind == "none":
        return None
    raise CheckpointError(f"unknown entry kind {kind!r} for {key!r} in the int8 config")


def quantized_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for safetensors, JSON config) of a model quantized by this module."""
    plan = q.plan_of(model)
    if plan is None:
        raise CheckpointError(
            f"{type(model).__name__} carries no quantization plan: quantize it with "
            "zoo.modifiers.quantization (quantize_static / quantize_dynamic / QAT) first"
        )
    tensors: dict[str, torch.Tensor] = {}
    state = model.state_dict()
    entries = {k: _encode(k, v, tensors) for k, v in state.items()}
    # Quantized modules read their serialisation version from the state dict's metadata
    # (an old version expects other keys), so it travels with the entries.
    versions = {k: dict(v) for k, v in getattr(state, "_metadata", {}).items()}
    config = {"format": FORMAT, "plan": plan.to_dict(), "entries": entries, "versions": versions}
    return tensors, config


def build_quantized(
    skeleton: nn.Module, tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> nn.Module:
    """Turn a float `skeleton` of the same architecture into the saved int8 model, in place."""
    if config.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} config (format={config.get('format')!r})")
    plan = q.QuantPlan.from_dict(config["plan"])
    skeleton.eval()
    if plan.scheme == "dynamic":
        q.quantize_dynamic(skeleton, plan.dynamic, reduce_range=plan.reduce_range)
    else:
        _restructure(skeleton, plan)
    state = OrderedDict((k, _decode(k, e, tensors)) for k, e in config["entries"].items())
    state._metadata = OrderedDict(config.get("versions", {}))  # type: ignore[attr-defined]
    with q._quiet():
        skeleton.load_state_dict(state, strict=True)
    setattr(skeleton, q.PLAN_ATTR, plan)
    return skeleton


def _restructure(model: nn.Module, plan: q.QuantPlan) -> None:
    """Static and QAT models convert to the same int8 modules: redo fusion and wrapping,
    insert placeholder observers and convert; the loaded state replaces every qparam."""
    from torch.ao.quantization import QConfig, fuse_modules, prepare
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    torch.backends.quantized.engine = q.BACKEND
    placeholder = QConfig(
        activation=MinMaxObserver.with_args(dtype=torch.quint8),
        weight=PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric
        ),
    )
    with q._quiet():
        if plan.fused:
            fuse_modules(model, plan.fused, inplace=True)
        q.restore_stubs(model, plan)
        for name in plan.qconfig_owners():
            model.get_submodule(name).qconfig = placeholder  # type: ignore[assignment]
        prepare(model, inplace=True)
    q.convert(model)


def save_quantized(model: nn.Module, folder: str | Path) -> Path:
    """Write `model.safetensors` + `quantization.json` (with the weights' sha256), atomically."""
    tensors, config = quantized_state(model)
    arch = getattr(model, "zoo_arch", None)
    with atomic_dir(folder) as tmp:
        save_tensor_file(tensors, tmp / WEIGHTS, metadata={"format": FORMAT})
        config["weights"] = {"path": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}
        if arch is not None:
            config.update(arch.to_dict())
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(folder)


def load_quantized(folder: str | Path, skeleton: nn.Module | None = None) -> nn.Module:
    """Load a folder written by `save_quantized`; the skeleton defaults to its architecture."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {folder} is not an int8 model folder")
    config = json.loads(path.read_text())
    weights = Path(folder) / config["weights"]["path"]
    actual = sha256_file(weights)
    if actual != config["weights"]["sha256"]:
        from zoo.errors import ChecksumMismatchError

        raise ChecksumMismatchError(str(weights), config["weights"]["sha256"], actual, "weights")
    if skeleton is None:
        from zoo.models import build_from_config

        if "arch" not in config:
            raise CheckpointError(f"{path} names no architecture: pass a float skeleton")
        skeleton = build_from_config(config)
    return build_quantized(skeleton, load_file(str(weights)), config)
