"""Typed settings of a training run, built from a config mapping with clear errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zoo.errors import ConfigError, suggest

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedConfig:
    """`train.distributed`: data-parallel training under torchrun (zoo.training.distributed)."""

    nproc_per_node: int = 1
    backend: str = "auto"  # "auto": nccl when CUDA is available, else gloo

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1:
            raise ConfigError(
                f"distributed.nproc_per_node: must be >= 1, got {self.nproc_per_node}"
            )
        if self.backend not in ("auto", "gloo", "nccl"):
            raise ConfigError(
                f"distributed.backend: 'auto', 'gloo' or 'nccl', got {self.backend!r}"
            )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "adamw"  # "adamw" or "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"  # "cosine", "linear" or "constant", per optimizer step
    warmup_fraction: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept frozen
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        checks = {
            "optimizer": self.optimizer in ("adamw", "sgd"),
            "schedule": self.schedule in ("cosine", "linear", "constant"),
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"train.{name}: invalid value {getattr(self, name)!r}")


def _matches(value: Any, hint: Any) -> bool:
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list | tuple)
    if origin is dict:
        return isinstance(value, Mapping)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build dataclass `cls` from `data`, naming the key and place of any bad field."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown key.{suggest(key, names)}")
        if not _matches(value, hints[key]):
            raise ConfigError(
                f"{where}.{key}: expected {hints[key]}, got {type(value).__name__} {value!r}"
            )
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(value, Mapping):
            values[key] = from_mapping(hint, value, f"{where}.{key}")
    return cls(**values)
