"""The int8 replay config (zoo/modifiers/quantization_io.py) in a compact, lossless form.

quantization_io's config names every state-dict entry's kind and every module's
serialisation version: for a 29k-weight CNN that is more bytes than the config of the
model itself. `split` keeps the readable part (format, plan) for config.json and
compacts the rest (entries: only the non-plain ones; versions: grouped by value) for the
weights' table of contents; `join` gives quantization_io's config back, equal to the
original (checked at export: when the compact form would not be, the full one is kept).
"""

from __future__ import annotations

from typing import Any


def split(config: dict[str, Any], names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(transform for config.json, details for the weights) from quantization_io's config;
    `names` are the tensor names of the int8 state."""
    rest = dict(config)
    details = {
        "entries": _compact_entries(rest.pop("entries"), names),
        "versions": _compact_versions(rest.pop("versions", {})),
    }
    return {"type": "int8", **rest}, details


def join(transform: dict[str, Any], details: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """quantization_io's config from `split`'s two parts (details may be in the transform)."""
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
    """quantization_io's entries without the plain-tensor ones, when `_expand_entries` can
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
