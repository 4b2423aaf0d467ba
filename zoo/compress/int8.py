"""The `int8` transform: int8 values, scales and zero points in safetensors, no pickle.

`quantized_state(model)` splits a converted model's state dict into plain tensors (int8 /
uint8 values, float64 scales, int64 zero points, float biases) and a JSON-able config
that says how to put them back together: each quantized tensor's scheme, dtype and axis,
plus the `QuantPlan` (fusions, stubs, dynamic layers) that rebuilds the module structure.
`build_quantized(skeleton, tensors, config)` redoes the plan on a fresh float model of the
same architecture (zoo.modifiers.quantization.rebuild), converts it without calibration
and loads the tensors, so every scale and zero point comes from the file.

That config names every state-dict entry's kind and every module's serialisation
version: for a 29k-weight CNN that is more bytes than the config of the model itself.
`split` keeps the readable part (format, plan) for config.json and compacts the rest
(entries: only the non-plain ones; versions: grouped by value) for the weights' table of
contents; `join` gives the config back, equal to the original (checked at export: when
the compact form would not be, the full one is kept).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from zoo.compress.sparse import unpack_notes
from zoo.compress.transform import Recording, Weights
from zoo.errors import CheckpointError, CompressedFormatError
from zoo.modifiers import quantization as q
from zoo.modifiers.quantization.torch_private import per_channel_quantized, per_tensor_quantized

FORMAT = "zoo-int8/1"
_SCALES = ".__scales"
_ZERO_POINTS = ".__zero_points"
_SCALE = ".__scale"
_ZERO_POINT = ".__zero_point"


def record(rec: Recording) -> dict[str, Any] | None:
    """The int8 state replaces the float one; the bulky details go to the weights' notes."""
    if rec.plan is None:
        return None
    state, config = quantized_state(rec.model)
    rec.state = state
    transform, rec.notes["int8"] = split(config, list(state))
    return transform


def load(model: nn.Module, weights: Weights, transform: dict[str, Any]) -> nn.Module:
    # Packed, the bulky details live in the weights' table of contents.
    details = (
        {}
        if "entries" in transform
        else unpack_notes(weights.tensors, weights.encoding).get("int8", {})
    )
    config = join(transform, details, list(weights.state))
    return build_quantized(model, weights.state, config)


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
        return per_channel_quantized(
            tensors[key], tensors[key + _SCALES], tensors[key + _ZERO_POINTS], entry["axis"]
        )
    if kind == "per_tensor":
        return per_tensor_quantized(
            tensors[key], float(tensors[key + _SCALE]), int(tensors[key + _ZERO_POINT])
        )
    if kind == "tuple":
        return tuple(_decode(f"{key}.{i}", e, tensors) for i, e in enumerate(entry["items"]))
    if kind == "dtype":
        return getattr(torch, entry["value"])
    if kind == "none":
        return None
    raise CompressedFormatError(f"unknown entry kind {kind!r} for {key!r} in the int8 config")


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
        raise CompressedFormatError(f"not a {FORMAT} config (format={config.get('format')!r})")
    plan = q.QuantPlan.from_dict(config["plan"])
    skeleton.eval()
    if plan.scheme == "dynamic":
        q.quantize_dynamic(skeleton, plan.dynamic, reduce_range=plan.reduce_range)
    else:
        q.rebuild(skeleton, plan)
    state = OrderedDict((k, _decode(k, e, tensors)) for k, e in config["entries"].items())
    state._metadata = OrderedDict(config.get("versions", {}))  # type: ignore[attr-defined]
    with q.quiet():
        skeleton.load_state_dict(state, strict=True)
    setattr(skeleton, q.PLAN_ATTR, plan)
    return skeleton


def split(config: dict[str, Any], names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(transform for config.json, details for the weights) from `quantized_state`'s config;
    `names` are the tensor names of the int8 state."""
    rest = dict(config)
    details = {
        "entries": _compact_entries(rest.pop("entries"), names),
        "versions": _compact_versions(rest.pop("versions", {})),
    }
    return {"type": "int8", **rest}, details


def join(transform: dict[str, Any], details: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """`quantized_state`'s config from `split`'s two parts (details may be in the transform)."""
    config = {k: v for k, v in transform.items() if k != "type"}
    config.update(details)
    config["versions"] = _expand_versions(config.get("versions", {}))
    config["entries"] = _expand_entries(config.get("entries", {}), names)
    return config


def _compact_versions(versions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{module: {"version": v}} -> {"by_version": {v: [modules]}}: one line, not hundreds."""
    if not all(set(v) == {"version"} for v in versions.values()):
        return {"modules": versions}
    grouped: dict[str, list[str]] = {}
    for module, value in versions.items():
        grouped.setdefault(str(value["version"]), []).append(module)
    return {"by_version": grouped}


def _expand_versions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if "modules" in data:
        return {k: dict(v) for k, v in data["modules"].items()}
    return {m: {"version": int(v)} for v, ms in data.get("by_version", {}).items() for m in ms}


def _compact_entries(entries: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """`quantized_state`'s entries without the plain-tensor ones, when `_expand_entries` can
    tell them back from the tensor names (it can unless a name is ambiguous)."""
    compact = {k: v for k, v in entries.items() if v != {"kind": "tensor"}}
    if _expand_entries(compact, names) == entries:
        return {"special": compact}
    return {"all": entries}


def _expand_entries(data: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Inverse of `_compact_entries`: every tensor name not under a special entry's key
    (quantized values, scales, tuple items) is a plain tensor entry."""
    if "all" in data:
        return dict(data["all"])
    special: dict[str, Any] = dict(data.get("special", {}))
    owned = tuple(special)
    plain = {
        n: {"kind": "tensor"}
        for n in names
        if not any(n == k or n.startswith(k + ".") for k in owned)
    }
    return {**plain, **special}
