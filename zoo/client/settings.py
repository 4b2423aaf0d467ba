"""Where the client looks: registry URL, cache folder, offline mode.

Every setting resolves when it is used, in one order: explicit argument, then a `ZOO_*`
environment variable, then a default. Nothing is read at import.
"""

from __future__ import annotations

import os

ENV_REGISTRY = "ZOO_REGISTRY"
# Only ZOO_OFFLINE: HF_HUB_OFFLINE is about the Hub (test suites set it for transformers).
ENV_OFFLINE = "ZOO_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}


def registry_url(url: str | None = None) -> str:
    """`url`, then $ZOO_REGISTRY, then the index module's default store (the local store
    that `make demo` fills, or $ZOO_STORE)."""
    if url:
        return url
    env = os.environ.get(ENV_REGISTRY)
    if env:
        return env
    from zoo.storage.base import default_store_url

    return default_store_url(None)


def canonical_url(url: str) -> str:
    """One spelling per registry, so its cache folder does not depend on how it was typed."""
    from zoo.storage.schemes import is_remote, local_identity

    if is_remote(url):  # any scheme outside the table (`https://host/x`) raises here
        return url.rstrip("/")
    return local_identity(url)


def is_offline(offline: bool | None = None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in _TRUE
