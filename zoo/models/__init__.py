"""Architecture registry and checkpoints (safetensors + JSON config, never pickle)."""

from zoo.models.registry import (
    ArchConfig,
    ModelRegistry,
    ModelSpec,
    arch_config_of,
    build_from_config,
    default_registry,
    get_model,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = [
    "ArchConfig",
    "ModelRegistry",
    "ModelSpec",
    "arch_config_of",
    "build_from_config",
    "default_registry",
    "get_model",
    "get_model_spec",
    "list_models",
    "register_model",
]
