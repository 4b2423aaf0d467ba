"""A sparse-model zoo: recipes, reproducible pipelines, a versioned index and a client.

Importing `zoo` does no work: no I/O, no network, no environment reads, not even torch.
The public names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "ZooError": "zoo.errors",
    "get_model": "zoo.models",
    "list_models": "zoo.models",
    "register_model": "zoo.models",
    "search": "zoo.client.api",
    "info": "zoo.client.api",
    "download": "zoo.client.api",
    "load": "zoo.client.api",
    "recipe": "zoo.client.api",
    "validate": "zoo.client.api",
    "diff": "zoo.client.api",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
