"""`zoo recipe validate FILE [--model ARCH]` and `zoo recipe show FILE`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

_COMMON = ("start_epoch", "end_epoch", "update_frequency", "params")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recipe", help="check and inspect compression recipes")
    commands = parser.add_subparsers(dest="recipe_command", metavar="SUBCOMMAND", required=True)

    validate = commands.add_parser("validate", help="check a recipe; exit non-zero if invalid")
    validate.add_argument("file", help="recipe YAML (native or SparseML legacy, or recipe.md)")
    validate.add_argument(
        "--model", metavar="ARCH", help="also resolve params on this registered architecture"
    )
    validate.set_defaults(func=run_validate)

    show = commands.add_parser("show", help="print a recipe's schedule as a table")
    show.add_argument("file")
    show.add_argument("--model", metavar="ARCH", help="list the parameters each modifier hits")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=run_show)


def _build(arch: str | None) -> Any:
    if arch is None:
        return None
    from zoo.models import get_model

    kwargs = {"pretrained": False} if arch == "minilm_classifier" else {}
    return get_model(arch, **kwargs)


def run_validate(args: argparse.Namespace) -> int:
    from zoo.recipes.parse import load_recipe
    from zoo.recipes.validate import check_model

    recipe = load_recipe(args.file)
    model = _build(args.model)
    if model is not None:
        check_model(recipe, model)
    count = sum(len(s.modifiers) for s in recipe.stages)
    on = f" against {args.model}" if args.model else ""
    form = "legacy SparseML" if recipe.legacy else f"schema v{recipe.schema_version}"
    print(f"{args.file}: OK{on} ({form}, {len(recipe.stages)} stage(s), {count} modifier(s))")
    return 0


def _when(mod: Any, run_type: str) -> str:
    if run_type == "oneshot":
        return "one-shot"
    start, end = mod.epoch_range()
    span = f"epoch {start:g} → {'end' if end == float('inf') else f'{end:g}'}"
    if mod.update_frequency > 0:
        span += f", every {mod.update_frequency:g}"
    return span


def _target(mod: Any) -> str:
    parts = []
    for f in dataclasses.fields(mod):
        if f.name in _COMMON or not f.init:  # internal state is not part of the recipe
            continue
        value = getattr(mod, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if value != default or "sparsity" in f.name or f.name.endswith("lr"):
            parts.append(f"{f.name}={value}")
    return ", ".join(parts)


def _rows(recipe: Any, targets: dict[tuple[str, int], list[str]] | None) -> list[dict[str, Any]]:
    timeline = {(s.name, i): m for s, i, m in recipe.timeline()}
    rows = []
    for stage in recipe.stages:
        for i, mod in enumerate(stage.modifiers):
            placed = timeline.get((stage.name, i), mod)
            if targets is not None:
                names = targets[(stage.name, i)]
                more = f" (+{len(names) - 4} more)" if len(names) > 4 else ""
                params = ", ".join(names[:4]) + more if names else "-"
            else:
                params = "-" if mod.params is None else str(mod.params)
            rows.append(
                {
                    "stage": f"{stage.name} ({stage.run_type})",
                    "index": i,
                    "modifier": mod.type_name,
                    "params": params,
                    "when": _when(placed, stage.run_type),
                    "target": _target(mod),
                }
            )
    return rows


def run_show(args: argparse.Namespace) -> int:
    from zoo.recipes.parse import load_recipe
    from zoo.recipes.validate import check_model

    recipe = load_recipe(args.file)
    model = _build(args.model)
    targets = check_model(recipe, model) if model is not None else None
    rows = _rows(recipe, targets)
    if args.json:
        print(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=args.file, caption=f"{recipe.max_epochs:g} training epoch(s)")
    for column in ("stage", "#", "modifier", "params", "when", "target"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["stage"],
            str(row["index"]),
            row["modifier"],
            row["params"],
            row["when"],
            row["target"],
        )
    Console().print(table)
    return 0
