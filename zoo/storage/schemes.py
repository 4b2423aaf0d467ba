"""The URL schemes of stores, in one table: which backend each names, and what is a path.

`s3://bucket[/prefix]` and `hf://org/repo[@revision]` are remote; `file://PATH` and a plain
path are a local folder. Any other `scheme://` (`gs://b`, `https://...`) is an error, never
a local folder of that name.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

#: scheme -> "module:class" of its backend (imported only when a store of it is opened).
SCHEMES: dict[str, str] = {
    "s3": "zoo.storage.s3:S3Store",
    "hf": "zoo.storage.hf:HfStore",
    "file": "zoo.storage.local:LocalStore",
}
REMOTE = ("s3", "hf")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
USAGE = "use a folder path, file://PATH, s3://bucket/prefix or hf://org/repo"


def scheme_of(url: str) -> str:
    """The table's scheme of `url` ("file" for a plain path); ConfigError for any other."""
    match = _SCHEME.match(url)
    if match is None:
        return "file"
    scheme = match.group(1)
    if scheme not in SCHEMES:
        raise ConfigError(f"unsupported store URL {url!r} (scheme {scheme}://): {USAGE}")
    return scheme


def is_remote(url: str) -> bool:
    return scheme_of(url) in REMOTE


def local_path(url: str) -> Path:
    """The folder of a local store URL (plain path or file://PATH), user (~) expanded."""
    if scheme_of(url) != "file":
        raise ConfigError(f"{url!r} is not a local store URL")
    return Path(url.removeprefix("file://")).expanduser()


def local_identity(url: str) -> str:
    """One spelling of a local store URL (absolute path), however it was typed."""
    return os.path.abspath(local_path(url))


def backend_class(scheme: str) -> Any:
    """The Store class the table names for `scheme`, imported now."""
    module, _, name = SCHEMES[scheme].partition(":")
    return getattr(importlib.import_module(module), name)
