"""The saved-model format, in one place: file names, format names and the table of transforms.

An export folder (written by zoo/compress/export.py, loaded by zoo/compress/load.py):

    model.safetensors        weights, packed (zoo/compress/sparse.py); metadata format "pt"
    config.json              architecture + `compression`: the transforms to replay on a
                             freshly built skeleton, in order, and the tensor encoding
    recipe.yaml, metrics.json, benchmarks.json, samples/batch.safetensors, README.md,
    zoo.json                 recipe, metrics, benchmarks, sample inputs + outputs, card, meta
    SHA256SUMS               sha256 of every other file (`sha256sum -c SHA256SUMS` works)

A model with no transform and nothing to gain from packing is written as a plain dense
checkpoint (zoo.models.checkpoint's layout), which transformers and huggingface_hub load.

Adding a transform: write one module with its `record` (and `replay` when it changes the
module structure, `load` when it stores weights in its own layout) and add one row to
`TRANSFORMS`. Rows are recorded in table order; a folder replays them in the order its
config.json lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.compress import adapter, exits, experts, int8, lowrank, sharing, structure, weight_int
from zoo.compress.sparse import pack_state, unpack_state
from zoo.compress.transform import Recording, Transform, Weights, load_state
from zoo.errors import CompressedFormatError
from zoo.models.arch import ArchConfig, arch_config_of
from zoo.models.registry import build_from_config
from zoo.modifiers import quantization as q

COMPRESSED_FORMAT = "zoo-compressed/1"
SAMPLES = "samples/batch.safetensors"
CHECKSUMS = "SHA256SUMS"
METRICS = "metrics.json"
BENCHMARKS = "benchmarks.json"
#: A model with no transform is packed only when that stores it in at most this fraction.
PLAIN_IF_ABOVE = 0.9
#: Linear layers at least this sparse run as CSR matmuls when loaded with keep="sparse".
CSR_MIN_SPARSITY = 0.7

TRANSFORMS: tuple[Transform, ...] = (
    Transform("adapter", adapter.record, replay=adapter.replay),
    Transform("lowrank", lowrank.record, replay=lowrank.replay),
    Transform("experts", experts.record, replay=experts.replay),
    Transform("early_exit", exits.record, replay=exits.replay),
    Transform("resize", structure.record, replay=structure.replay),
    Transform("weight_sharing", sharing.record, load=sharing.load),
    Transform("int8", int8.record, load=int8.load),
    Transform("weight_int", weight_int.record, load=weight_int.load),
)
_BY_NAME = {t.name: t for t in TRANSFORMS}


@dataclass(frozen=True)
class Compressed:
    tensors: dict[str, torch.Tensor]  # for model.safetensors
    compression: dict[str, Any] | None  # config.json's section; None: a plain checkpoint
    reference: nn.Module  # the architecture as built fresh (low-rank pairs applied)
    widths: dict[str, Any]  # the structure edits found against `reference`


def compress_model(model: nn.Module, pack: bool = True) -> Compressed:
    """The weights and the `compression` section that describe `model`."""
    plan = q.plan_of(model)
    # An int8 model's state holds non-tensors: the int8 transform writes it.
    state = {} if plan else {k: v.detach().clone() for k, v in model.state_dict().items()}
    rec = Recording(model, build_from_config(arch_config_of(model)), plan, state)
    transforms = [entry for t in TRANSFORMS if (entry := t.record(rec)) is not None]
    if not pack:
        encoding: dict[str, Any] = {"format": "plain"}
        tensors = _plain(rec.state)
        for entry in transforms:
            entry.update(rec.notes.get(entry["type"], {}))
    else:
        packed = pack_state(rec.state, rec.notes or None)
        if not transforms and _nbytes(packed.tensors) > PLAIN_IF_ABOVE * _nbytes(rec.state):
            # Not worth it: every safetensors tool reads the plain layout.
            encoding, tensors = {"format": "plain"}, _plain(rec.state)
        else:
            encoding, tensors = packed.config(), packed.tensors
    section = {"format": COMPRESSED_FORMAT, "transforms": transforms, "encoding": encoding}
    plain = not transforms and encoding["format"] == "plain"
    return Compressed(tensors, None if plain else section, rec.reference, rec.widths)


def _plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in state.items()}


def _nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def transform_names(config: dict[str, Any]) -> list[str]:
    return [t["type"] for t in (config.get("compression") or {}).get("transforms", [])]


def build_model(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The model that config.json + the weights file's tensors describe, in eval mode."""
    model = build_from_config(ArchConfig.from_dict(config))
    compression = config.get("compression")
    if not compression:
        model.load_state_dict(tensors, strict=True)
        return model.eval()
    if not isinstance(compression, dict) or compression.get("format") != COMPRESSED_FORMAT:
        found = compression.get("format") if isinstance(compression, dict) else compression
        raise CompressedFormatError(
            f"compression format {found!r} is not {COMPRESSED_FORMAT}; this zoo version "
            "cannot load it. Upgrade the zoo package."
        )
    encoding = compression.get("encoding", {})
    state = tensors if encoding.get("format") == "plain" else unpack_state(tensors, encoding)
    loader: tuple[Transform, dict[str, Any]] | None = None
    for entry in compression.get("transforms", []):
        transform = _BY_NAME.get(entry.get("type"))
        if transform is None:
            raise CompressedFormatError(
                f"unknown compression transform {entry.get('type')!r} in config.json; this zoo "
                f"replays {', '.join(_BY_NAME)}. Upgrade the zoo package."
            )
        transform.replay(model, entry)
        if transform.load is not None:
            if loader is not None:
                raise CompressedFormatError(
                    f"config.json lists both {loader[0].name!r} and {transform.name!r}, "
                    "which each store the weights in their own layout"
                )
            loader = (transform, entry)
    if loader is None:
        return load_state(model, state).eval()
    transform, entry = loader
    assert transform.load is not None
    return transform.load(model, Weights(state, tensors, encoding), entry).eval()
