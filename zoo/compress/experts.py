"""The `experts` transform: {"blocks": {module: {"kind", "num_experts", "top_k"}}}.

Upcycled blocks (zoo.modifiers.moe) and transformers' fused MoE blocks whose expert count
was pruned are rebuilt with the recorded number of experts on the skeleton before the
weights load (the weights then replace the copies)."""

from __future__ import annotations

from typing import Any

from torch import nn

from zoo.compress.transform import Recording
from zoo.errors import CompressedFormatError
from zoo.modifiers import moe

_KINDS = (moe.LINEAR, moe.BERT_FFN, "fused")


def record(rec: Recording) -> dict[str, Any] | None:
    found = moe.moe_structure(rec.model)
    fresh = moe.moe_structure(rec.reference)
    # A transformers MoE block as its config builds it needs no entry.
    blocks = {name: spec for name, spec in found.items() if fresh.get(name) != spec}
    if not blocks:
        return None
    moe.restructure(rec.reference, blocks)
    return {"type": "experts", "blocks": blocks}


def replay(model: nn.Module, transform: dict[str, Any]) -> None:
    blocks = transform.get("blocks")
    if not isinstance(blocks, dict):
        raise CompressedFormatError(f"malformed experts entry in config.json: {transform!r}")
    for name, spec in blocks.items():
        if (
            not isinstance(spec, dict)
            or spec.get("kind") not in _KINDS
            or not isinstance(spec.get("num_experts"), int)
            or not isinstance(spec.get("top_k"), int)
            or not 1 <= spec["top_k"] <= spec["num_experts"]
        ):
            raise CompressedFormatError(f"malformed experts entry for {name!r}: {spec!r}")
        try:
            model.get_submodule(name)
        except AttributeError:
            raise CompressedFormatError(
                f"the architecture has no module {name!r} to rebuild as experts; the export "
                "was made from another version of it"
            ) from None
    moe.restructure(model, blocks)
