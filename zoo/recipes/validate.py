"""Checks that need more than one modifier (conflicts) or a model (selectors).

Two modifiers conflict when they share a non-None ``conflict_group`` (two pruning
modifiers, two quantizers), their epoch ranges overlap, and they write a common parameter.
Without a model, "common parameter" means a common selector entry (the same name, regex or
``__ALL_PRUNABLE__``); with a model, the selectors are resolved and intersected. Train
stages are compared on the recipe's absolute timeline; a one-shot stage within itself.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

from torch import nn

from zoo.errors import RecipeError, raise_collected
from zoo.modifiers.base import Modifier
from zoo.recipes.schema import Recipe, Stage

Placed = tuple[Stage, int, Modifier]


def _groups(recipe: Recipe) -> list[list[Placed]]:
    groups: list[list[Placed]] = [recipe.timeline()]
    for stage in recipe.stages:
        if stage.run_type == "oneshot":
            groups.append([(stage, i, m) for i, m in enumerate(stage.modifiers)])
    return groups


def _selector_entries(_stage: Stage, _index: int, mod: Modifier) -> set[str]:
    return mod.selector_entries()


def _span(mod: Modifier) -> str:
    start, end = mod.epoch_range()
    return f"[{start:g}, {'end' if end == float('inf') else f'{end:g}'})"


def _check_conflicts(
    recipe: Recipe, targets: Callable[[Stage, int, Modifier], set[str]], what: str
) -> None:
    for group in _groups(recipe):
        for (sa, ia, a), (sb, ib, b) in combinations(group, 2):
            if a.conflict_group is None or a.conflict_group != b.conflict_group:
                continue
            if not a.overlaps(b):
                continue
            shared = sorted(targets(sa, ia, a) & targets(sb, ib, b))
            if shared:
                other = f"stage {sa.name!r} modifiers[{ia}] ({a.type_name})"
                raise RecipeError(
                    f"{what} {shared[0]!r}"
                    f"{f' (and {len(shared) - 1} more)' if len(shared) > 1 else ''} is also "
                    f"targeted by {other}; both are {a.conflict_group} modifiers active in "
                    f"overlapping epochs {_span(a)} and {_span(b)}. Give them disjoint params "
                    "or non-overlapping epochs.",
                    file=recipe.source,
                    stage=sb.name,
                    index=ib,
                    modifier=b.type_name,
                    field=b.written_name("params"),
                )


def check_static(recipe: Recipe) -> None:
    """Conflicts visible without a model (same selector entry in overlapping epochs)."""
    _check_conflicts(recipe, _selector_entries, "params entry")


def check_model(recipe: Recipe, model: nn.Module) -> dict[tuple[str, int], list[str]]:
    """Resolve every selector on `model` and check conflicts; returns targets per modifier."""
    by_position: dict[tuple[str, int], list[str]] = {}
    errors: list[RecipeError] = []
    for stage, index, mod in recipe.modifiers():
        try:
            by_position[(stage.name, index)] = mod.targets(model)
            mod.check_model(model)
        except RecipeError as exc:
            errors.append(
                mod.locate(exc).with_context(
                    file=recipe.source, stage=stage.name, index=index, modifier=mod.type_name
                )
            )
    raise_collected(errors)

    def targets(stage: Stage, index: int, _mod: Modifier) -> set[str]:
        return set(by_position[(stage.name, index)])

    _check_conflicts(recipe, targets, "parameter")
    return by_position
