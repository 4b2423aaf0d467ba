"""A small, explicit registry of architectures.

Built-in architectures are registered by `_register_builtins` the first time the default
registry is used, never as a side effect of importing a module.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from zoo.errors import DuplicateNameError, UnknownNameError
from zoo.models.arch import ArchConfig, arch_config_of, set_arch_config

__all__ = ["ArchConfig", "arch_config_of"]  # re-exported: their home is zoo.models.arch

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about one architecture."""

    name: str
    builder: Builder
    domain: str  # "cv" or "nlp": the first facet of a zoo stub
    task: str  # e.g. "classification"
    inputs: tuple[str, ...]  # names of the forward() arguments, in order
    description: str = ""


class ModelRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, ModelSpec] = {}

    def add(self, spec: ModelSpec) -> None:
        if spec.name in self._specs:
            raise DuplicateNameError(
                f"model {spec.name!r} is already registered; pick another name or "
                "unregister the existing one first"
            )
        self._specs[spec.name] = spec

    def remove(self, name: str) -> None:
        self.spec(name)
        del self._specs[name]

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownNameError("model", name, self._specs) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._specs if fnmatch.fnmatchcase(n, pattern))

    def build(self, name: str, **kwargs: Any) -> nn.Module:
        spec = self.spec(name)
        model = spec.builder(**kwargs)
        # A builder may record a richer config itself (the text model resolves its
        # encoder config); otherwise the call's kwargs are the config.
        if not isinstance(getattr(model, "zoo_arch", None), ArchConfig):
            set_arch_config(model, ArchConfig(name, dict(kwargs)))
        return model


def _register_builtins(registry: ModelRegistry) -> None:
    from zoo.models import hf, text, vision

    registry.add(
        ModelSpec("mlp", vision.mlp, "cv", "classification", ("x",), "MLP for 28x28 images")
    )
    registry.add(
        ModelSpec(
            "cnn_small",
            vision.cnn_small,
            "cv",
            "classification",
            ("x",),
            "conv/bn/relu blocks for 28x28 images",
        )
    )
    registry.add(
        ModelSpec(
            "minilm_classifier",
            text.minilm_classifier,
            "nlp",
            "text_classification",
            ("input_ids", "attention_mask"),
            "all-MiniLM-L6-v2 encoder + mean pooling + linear head",
        )
    )
    registry.add(
        ModelSpec(
            "hf",
            hf.hf_model,
            "nlp",
            "text_classification",
            ("input_ids", "attention_mask"),
            "any transformers sequence classifier or causal LM, from a folder or the HF cache",
        )
    )


@functools.cache
def default_registry() -> ModelRegistry:
    registry = ModelRegistry()
    _register_builtins(registry)
    return registry


def register_model(
    name: str, *, domain: str = "cv", task: str = "classification", inputs: tuple[str, ...] = ("x",)
) -> Callable[[Builder], Builder]:
    """Decorator: add a builder to the default registry. Raises on a duplicate name."""

    def decorate(builder: Builder) -> Builder:
        default_registry().add(
            ModelSpec(name, builder, domain, task, inputs, builder.__doc__ or "")
        )
        return builder

    return decorate


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build architecture `name` from the default registry with `kwargs`."""
    return default_registry().build(name, **kwargs)


def get_model_spec(name: str) -> ModelSpec:
    return default_registry().spec(name)


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered architectures matching a shell-style wildcard."""
    return default_registry().names(pattern)


def build_from_config(config: ArchConfig | dict[str, Any]) -> nn.Module:
    arch = config if isinstance(config, ArchConfig) else ArchConfig.from_dict(config)
    return get_model(arch.arch, **arch.kwargs)
