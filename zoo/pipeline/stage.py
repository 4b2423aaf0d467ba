"""What every stage script shares: error handling, and the arguments of per-entry stages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.pipeline.entries import EntryConfig


def run_stage(body: Callable[[], None]) -> None:
    """Run a stage; a project error becomes one line on stderr and a non-zero exit."""
    try:
        body()
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def entry_parser(description: str | None) -> argparse.ArgumentParser:
    """Arguments of a stage that works on one zoo entry (compress, evaluate, ...)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--entry", required=True, help="key under zoo: in params.yaml")
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--params", default="params.yaml")
    return parser


def load_entry(args: argparse.Namespace) -> tuple[dict[str, Any], EntryConfig]:
    """params.yaml and the typed config of the entry named by --entry."""
    from zoo.pipeline.entries import entry_config
    from zoo.pipeline.params import load_params

    params = load_params(args.params)
    return params, entry_config(params, args.entry)
