"""The `zoo` command.

Each command family lives next to the code it drives and exposes
`register(subparsers) -> None`; its handlers are set with `parser.set_defaults(func=...)`
and return an exit status. Families are imported only when the CLI runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from zoo.errors import ZooError

# Every command family; each module provides register(subparsers).
COMMAND_FAMILIES: tuple[str, ...] = (
    "zoo.models.cli",
    "zoo.recipes.cli",
    "zoo.index.cli",
    "zoo.client.cli",
    "zoo.catalog.cli",
    "zoo.reproduce",
    "zoo.deploy.cli",
    "zoo.nas.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo", description="Sparse-model zoo: recipes, registry, client and catalog."
    )
    parser.add_argument("--version", action="version", version=f"zoo {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_FAMILIES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _version() -> str:
    from zoo import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # Library warnings (a registry fallback, ...) go through `logging`; the command shows
    # them on stderr like its own errors, for this call only.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("zoo: %(message)s"))
    handler.setLevel(logging.WARNING)
    package_log = logging.getLogger("zoo")
    package_log.addHandler(handler)
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        package_log.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
