"""`zoo models`: list the registered architectures."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list registered architectures")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.models import default_registry

    registry = default_registry()
    specs = [registry.spec(n) for n in registry.names(args.pattern)]
    if args.json:
        rows = [{"name": s.name, "domain": s.domain, "task": s.task} for s in specs]
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "domain", "task", "inputs", "description")
    for s in specs:
        table.add_row(s.name, s.domain, s.task, ", ".join(s.inputs), s.description)
    Console().print(table)
    return 0
