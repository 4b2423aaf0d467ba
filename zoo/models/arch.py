"""The JSON-serialisable description of a built model: architecture name + kwargs.

Its own module so that builders (zoo/models/text.py, hf.py) and the saved-model format can
use it without importing the registry, which imports the builders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

#: The attribute a registry-built model carries its ArchConfig in.
ARCH_ATTR = "zoo_arch"


@dataclass(frozen=True)
class ArchConfig:
    """The JSON-serialisable recipe for rebuilding a module: architecture name + kwargs."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        return cls(arch=str(data["arch"]), kwargs=dict(data.get("kwargs", {})))


def arch_config_of(model: nn.Module) -> ArchConfig:
    arch = getattr(model, ARCH_ATTR, None)
    if not isinstance(arch, ArchConfig):
        raise TypeError("model was not built through the zoo model registry (no zoo_arch)")
    return arch


def set_arch_config(model: nn.Module, arch: ArchConfig) -> None:
    """Record how to rebuild `model` (a builder that resolves a richer config than its
    call's kwargs records that itself)."""
    setattr(model, ARCH_ATTR, arch)
