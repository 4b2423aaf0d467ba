"""The `weight_sharing` transform: {"bits", "layers": {layer: shape}}. Each shared layer's
weight is stored as `bits`-bit packed codebook indices + the codebook, and written back by
zoo.modifiers.weight_sharing.load_shared."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.compress.sparse import pack_bits, unpack_bits
from zoo.compress.transform import Recording, Weights, load_state
from zoo.modifiers import weight_sharing as ws


def record(rec: Recording) -> dict[str, Any] | None:
    """Swap each shared layer's weight in the state for bit-packed indices + codebook."""
    recorded = getattr(rec.model, ws.LAYERS_ATTR, None)
    if rec.plan is not None or not recorded or not recorded.get("layers"):
        return None
    tensors, config = ws.shared_state(rec.model)
    bits = int(config["bits"])
    for layer in config["layers"]:
        for suffix in ("weight", "weight_codebook", "weight_indices"):
            rec.state.pop(f"{layer}.{suffix}", None)
        rec.state[f"{layer}.weight.indices"] = pack_bits(tensors[f"{layer}.weight.indices"], bits)
        rec.state[f"{layer}.weight.codebook"] = tensors[f"{layer}.weight.codebook"]
    return {"type": "weight_sharing", "bits": bits, "layers": config["layers"]}


def load(model: nn.Module, weights: Weights, transform: dict[str, Any]) -> nn.Module:
    """Load the unshared weights, then each shared layer from its indices + codebook."""
    bits = int(transform["bits"])
    shared: dict[str, torch.Tensor] = {}
    for layer, shape in transform["layers"].items():
        count = int(np.prod(shape, dtype=np.int64))
        packed = weights.state.pop(f"{layer}.weight.indices")
        shared[f"{layer}.weight.indices"] = unpack_bits(packed, bits, count)
        shared[f"{layer}.weight.codebook"] = weights.state.pop(f"{layer}.weight.codebook")
    load_state(model, weights.state, {f"{layer}.weight" for layer in transform["layers"]})
    ws.load_shared(
        model, shared, {"format": ws.FORMAT, "bits": bits, "layers": transform["layers"]}
    )
    setattr(model, ws.LAYERS_ATTR, {"bits": bits, "layers": sorted(transform["layers"])})
    return model
