"""The `lowrank` transform: {"ranks": {module: rank}}; factorized layers (zoo.modifiers.lowrank)
are rebuilt as low-rank pairs on the skeleton before the weights load."""

from __future__ import annotations

from typing import Any

from torch import nn

from zoo.compress.transform import Recording
from zoo.modifiers import lowrank


def record(rec: Recording) -> dict[str, Any] | None:
    ranks = lowrank.ranks_of(rec.model)
    if not ranks:
        return None
    lowrank.restructure(rec.reference, ranks)
    return {"type": "lowrank", "ranks": ranks}


def replay(model: nn.Module, transform: dict[str, Any]) -> None:
    lowrank.restructure(model, {k: int(v) for k, v in transform["ranks"].items()})
