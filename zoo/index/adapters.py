"""What makes an entry an adapter, and the one base it fits (no torch: the index's view).

An adapter entry holds peft's two files; its `lineage.parent` must be an exact base
version, `zoo:...@vN`: an adapter fits one set of weights, not whatever an alias points to
tomorrow. zoo/compress/adapter.py writes and composes such folders.
"""

from __future__ import annotations

from collections.abc import Collection

from zoo.errors import AdapterError, InvalidStubError
from zoo.index.schema import Stub, parse_ref, parse_version

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def is_adapter(files: Collection[str]) -> bool:
    """True for the file list of an adapter entry (peft's config and weights)."""
    return CONFIG_FILE in files and WEIGHTS_FILE in files


def exact_parent(parent: str | None) -> tuple[Stub, int]:
    """(stub, version) of an adapter's base; an alias or a missing version is an error."""
    if not parent:
        raise AdapterError("an adapter needs its base as lineage.parent = 'zoo:...@vN'")
    try:
        stub, ref = parse_ref(parent)
    except InvalidStubError as exc:
        raise AdapterError(f"the adapter's base {parent!r} is not a stub: {exc}") from exc
    version = parse_version(ref) if ref else None
    if version is None:
        raise AdapterError(
            f"the adapter's base {parent!r} must name an exact version (zoo:...@vN), not "
            f"{'an alias' if ref else 'no version'}"
        )
    return stub, version
