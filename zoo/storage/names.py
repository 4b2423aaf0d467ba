"""The one set of rules for every name read from a store, an index or a file list.

A store, an index document or a `SHA256SUMS` file is data from elsewhere: a damaged or
hostile one may put `../../x`, an absolute path or a backslash where a hash or a file name
belongs. Every such value passes one of these checks before it is joined to a path (in the
cache, a snapshot, a `--to` folder, a store key), and publishing applies the same rules, so
the registry never accepts a name that no client could use.

Each check returns the value unchanged or raises `SchemaError` naming where it came from.
"""

from __future__ import annotations

import re
from typing import Any

from zoo.errors import SchemaError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHARD_ID = re.compile(r"[0-9a-f]{2}")
# A file name part: letters, digits and `_ . + = @ -`, not starting with a dot (no `.`,
# `..` or hidden files), so it is the same file on Linux, macOS, Windows and as an S3 key.
_PART = re.compile(r"[A-Za-z0-9_+=@-][A-Za-z0-9_.+=@-]{0,254}")
MAX_DEPTH = 16
#: Versions are v1 ... v999999999 (zoo.index.schema's `_VERSION_RE` allows nine digits).
MAX_VERSION = 999_999_999


def is_sha256(value: Any) -> bool:
    return type(value) is str and _SHA256.fullmatch(value) is not None


def check_sha256(value: Any, where: str) -> str:
    """A sha256 is 64 lowercase hex characters, nothing else."""
    if not is_sha256(value):
        raise SchemaError(where, f"{_short(value)} is not a sha256 (64 lowercase hex characters)")
    return value


def check_shard_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SHARD_ID.fullmatch(value):
        raise SchemaError(where, f"shard id {_short(value)} is not 2 lowercase hex characters")
    return value


def check_file_name(value: Any, where: str) -> str:
    """A relative POSIX path inside a model folder: 1-16 parts of `[A-Za-z0-9_.+=@-]`,
    none starting with a dot; no backslash, no absolute path, no `..`."""
    if not isinstance(value, str) or not value:
        raise SchemaError(where, f"file name {_short(value)} must be a non-empty string")
    parts = value.split("/")
    if len(parts) > MAX_DEPTH or not all(_PART.fullmatch(p) for p in parts):
        raise SchemaError(
            where,
            f"file name {_short(value)} is refused: a file name is a relative path of up to "
            f"{MAX_DEPTH} parts of letters, digits and '_.+=@-', none starting with '.' "
            "(no '..', no absolute path, no backslash)",
        )
    return value


def check_count(value: Any, where: str, what: str) -> int:
    """A non-negative integer (a size or an element count); `True` is not a number here."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(where, f"{what} {_short(value)} must be a non-negative integer")
    return value


def check_version_number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise SchemaError(where, f"version {_short(value)} must be an integer 1..{MAX_VERSION}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
