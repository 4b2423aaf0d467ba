"""What a transform of the saved-model format is: how it is recorded from a model, replayed
on a fresh skeleton, and how it puts its packed weights back (zoo/compress/format.py holds
the table of them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.errors import CompressedFormatError
from zoo.modifiers.quantization.plan import QuantPlan


@dataclass
class Recording:
    """A model being written: each transform reads it and rewrites its own part of `state`."""

    model: nn.Module
    reference: nn.Module  # the architecture built fresh, with the structure replayed so far
    plan: QuantPlan | None  # the int8 plan, when the model is quantized
    state: dict[str, torch.Tensor]  # the tensors to write, before encoding
    notes: dict[str, Any] = field(default_factory=dict)  # bulky details, by transform name
    widths: dict[str, Any] = field(default_factory=dict)  # structure edits (resize)


@dataclass
class Weights:
    """A folder's weights being loaded: decoded `state` and the raw file's `tensors`."""

    state: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]
    encoding: dict[str, Any]


def load_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    allowed_missing: frozenset[str] | set[str] = frozenset(),
) -> nn.Module:
    """Load `state` into the replayed skeleton; only `allowed_missing` may be left out."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - allowed_missing:
        raise CompressedFormatError(
            f"the weights do not fit the rebuilt model: missing "
            f"{sorted(set(missing) - allowed_missing)}, unexpected {sorted(unexpected)}"
        )
    return model


def no_replay(model: nn.Module, transform: dict[str, Any]) -> None:
    """For transforms that change weights only, not the module structure."""


#: Puts a folder's weights into the replayed skeleton and returns the finished model.
WeightLoader = Callable[[nn.Module, Weights, dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class Transform:
    """One row of the format's table. `record` returns the config.json entry (with "type")
    or None when the model does not need this transform; `replay` redoes the structure on
    a fresh skeleton; `load`, for transforms with their own weight layout, loads them."""

    name: str
    record: Callable[[Recording], dict[str, Any] | None]
    replay: Callable[[nn.Module, dict[str, Any]], None] = no_replay
    load: WeightLoader | None = None
