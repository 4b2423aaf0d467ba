"""Read recipes: our native form and SparseML's legacy forms, into the same typed objects.

Native form::

    schema_version: 1
    variables: {epochs: 10, sparsity: 0.9}
    stages:
      prune:
        run_type: train
        modifiers:
          - type: GMPruningModifier
            params: __ALL_PRUNABLE__
            final_sparsity: ${sparsity}
            end_epoch: ${epochs - 2}

Legacy forms (SparseML 1.x, llm-compressor): top-level scalars are variables, every
``*_modifiers`` list of ``!Tagged`` modifiers joins one train stage named "default", fields
use ``eval(expr)``; ``*_stage`` mappings hold a ``run_type`` and ``*_modifiers`` as
``{Name: {fields}}``. SparseZoo's ``recipe.md`` (YAML front matter, then markdown) is read
too. YAML is loaded with a SafeLoader subclass that turns ``!Name`` tags into plain data;
nothing in a recipe can construct a Python object or run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import RecipeError, raise_collected, suggest
from zoo.modifiers.base import Modifier
from zoo.recipes.expressions import Variables
from zoo.recipes.fields import build_fields
from zoo.recipes.registry import resolve_modifier
from zoo.recipes.schema import RUN_TYPES, SCHEMA_VERSION, Recipe, Stage

LEGACY_STAGE = "default"
_NATIVE_KEYS = ("schema_version", "variables", "stages")
_STAGE_KEYS = ("run_type", "modifiers")


@dataclass
class _Tagged:
    """A ``!Name {fields}`` node from a legacy recipe."""

    name: str
    fields: dict[str, Any]


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that reads any ``!Tag`` as a `_Tagged` modifier entry."""


def _construct_tagged(loader: _RecipeLoader, suffix: str, node: yaml.Node) -> _Tagged:
    # Old SparseML recipes may spell tags with a framework prefix: !pytorch.GMPruningModifier
    name = suffix.rsplit(".", 1)[-1]
    if isinstance(node, yaml.MappingNode):
        return _Tagged(name, loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.ScalarNode) and not loader.construct_scalar(node):
        return _Tagged(name, {})
    raise yaml.constructor.ConstructorError(
        None, None, f"!{suffix} must be followed by a mapping of fields", node.start_mark
    )


_RecipeLoader.add_multi_constructor("!", _construct_tagged)


def _front_matter(text: str) -> str:
    """The YAML of a SparseZoo recipe.md (between two ``---`` lines), else `text`.

    Published recipe.md files may open with an HTML comment (a license header).
    """
    body = text.lstrip("\ufeff").lstrip()
    while body.startswith("<!--") and "-->" in body:
        body = body[body.index("-->") + 3 :].lstrip()
    lines = body.splitlines()
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return "\n".join(lines[1:i])
    return text


def load_yaml(text: str, source: str = "<recipe>") -> Any:
    try:
        return yaml.load(_front_matter(text), Loader=_RecipeLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"invalid YAML{where}: {problem}", file=source) from None


def dump_recipe(recipe: Recipe) -> str:
    """YAML of `recipe` in the native form; `parse_recipe` reads it back to equal objects.

    Variables are dropped from the text: every field already holds its resolved value, and
    a variable that looks like ``${...}`` would be evaluated again on reading.
    """
    data = recipe.to_dict()
    data.pop("variables")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Parse the recipe file at `path`; `overrides` replace variables of the same name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read recipe: {exc.strerror or exc}", file=str(path)) from None
    return parse_recipe(text, source=str(path), overrides=overrides)


def parse_recipe(
    text: str, source: str = "<recipe>", overrides: dict[str, Any] | None = None
) -> Recipe:
    """Parse recipe YAML text (native or legacy form)."""
    return recipe_from_data(load_yaml(text, source), source, overrides)


def recipe_from_data(
    data: Any, source: str = "<recipe>", overrides: dict[str, Any] | None = None
) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a YAML mapping at the top level", file=source)
    try:
        if "stages" in data:
            recipe = _native(data, source, overrides or {})
        else:
            recipe = _legacy(data, source, overrides or {})
    except RecipeError as exc:
        raise exc.with_context(file=source) from None
    from zoo.recipes.validate import check_static

    check_static(recipe)
    return recipe


# ---- native -----------------------------------------------------------------------------
def _native(data: dict[str, Any], source: str, overrides: dict[str, Any]) -> Recipe:
    for key in data:
        if key not in _NATIVE_KEYS:
            raise RecipeError(
                f"unknown top-level key {key!r}.{suggest(key, _NATIVE_KEYS)} "
                f"Valid keys: {', '.join(_NATIVE_KEYS)}.",
                field=key,
            )
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise RecipeError(
            f"schema_version {version!r} is not supported; this zoo reads up to "
            f"{SCHEMA_VERSION}. Upgrade the zoo or rewrite the recipe.",
            field="schema_version",
        )
    raw_vars = data.get("variables") or {}
    if not isinstance(raw_vars, dict):
        raise RecipeError("variables must be a mapping of name: value", field="variables")
    variables = Variables({**raw_vars, **overrides})
    stages_raw = data["stages"]
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise RecipeError("stages must be a non-empty mapping of name: stage", field="stages")
    stages = []
    errors: list[RecipeError] = []
    for name, body in stages_raw.items():
        try:
            stages.append(_native_stage(str(name), body, variables))
        except RecipeError as exc:
            errors.append(exc.with_context(stage=str(name)))
    raise_collected(errors)
    return Recipe(stages, variables.resolved(), version, source, legacy=False)


def _native_stage(name: str, body: Any, variables: Variables) -> Stage:
    if not isinstance(body, dict):
        raise RecipeError("a stage must be a mapping with run_type and modifiers")
    for key in body:
        if key not in _STAGE_KEYS:
            raise RecipeError(
                f"unknown stage key {key!r}.{suggest(key, _STAGE_KEYS)} "
                f"Valid keys: {', '.join(_STAGE_KEYS)}.",
                field=key,
            )
    run_type = _run_type(body.get("run_type", "train"))
    return Stage(name, run_type, _modifier_list(body.get("modifiers") or [], variables))


def _run_type(value: Any) -> Any:
    if value not in RUN_TYPES:
        raise RecipeError(
            f"run_type must be one of {', '.join(RUN_TYPES)}, got {value!r}", field="run_type"
        )
    return value


# ---- legacy -----------------------------------------------------------------------------
def _is_modifier_key(key: str) -> bool:
    return key == "modifiers" or key.endswith("_modifiers")


def _legacy(data: dict[str, Any], source: str, overrides: dict[str, Any]) -> Recipe:
    # Everything that is not a modifier list or a stage is a variable (scalars, lists, and
    # mappings such as SparseML's {sparsity: [params]} targets).
    plain = {k: v for k, v in data.items() if not _is_modifier_key(k) and not k.endswith("_stage")}
    variables = Variables({**plain, **overrides})
    stages: list[Stage] = []
    flat: list[Modifier] = []
    errors: list[RecipeError] = []
    for key, value in data.items():
        try:
            if _is_modifier_key(key):
                flat.extend(_modifier_list(value, variables, start=len(flat)))
            elif key.endswith("_stage"):
                stages.append(_legacy_stage(key, value, variables))
        except RecipeError as exc:
            stage = key if key.endswith("_stage") else LEGACY_STAGE
            errors.append(exc.with_context(stage=stage))
    raise_collected(errors)
    if flat:
        stages.insert(0, Stage(LEGACY_STAGE, "train", flat))
    if not stages:
        raise RecipeError("no modifiers found (expected *_modifiers lists or *_stage mappings)")
    return Recipe(stages, variables.resolved(), SCHEMA_VERSION, source, legacy=True)


def _legacy_stage(name: str, body: Any, outer: Variables) -> Stage:
    if not isinstance(body, dict):
        raise RecipeError("a *_stage entry must be a mapping")
    local = {
        k: v
        for k, v in body.items()
        if k != "run_type" and not _is_modifier_key(k) and not isinstance(v, dict | list)
    }
    variables = Variables({**{n: outer.get(n) for n in outer.names()}, **local}) if local else outer
    modifiers: list[Modifier] = []
    for key, value in body.items():
        if _is_modifier_key(key):
            modifiers.extend(_modifier_list(value, variables, start=len(modifiers)))
    if "run_type" in body:
        run_type = _run_type(body["run_type"])
    else:  # llm-compressor infers it; one-shot when every modifier can run one-shot
        oneshot = modifiers and all(m.runs_oneshot() for m in modifiers)
        run_type = "oneshot" if oneshot else "train"
    return Stage(name, run_type, modifiers)


# ---- modifiers --------------------------------------------------------------------------
def _entries(value: Any) -> list[tuple[str, Any]]:
    """(type name, raw fields) pairs from any of the list / mapping spellings."""
    if isinstance(value, dict):  # {Name: {fields}} (llm-compressor)
        return [(str(k), v if v is not None else {}) for k, v in value.items()]
    if not isinstance(value, list):
        raise RecipeError("modifiers must be a list (or a mapping of Name: fields)")
    entries: list[tuple[str, Any]] = []
    for item in value:
        if isinstance(item, _Tagged):
            entries.append((item.name, item.fields))
        elif isinstance(item, dict) and "type" in item:
            fields = {k: v for k, v in item.items() if k != "type"}
            entries.append((str(item["type"]), fields))
        elif isinstance(item, dict) and len(item) == 1:
            ((name, fields),) = item.items()
            entries.append((str(name), fields if fields is not None else {}))
        else:
            entries.append(("?", item))
    return entries


def _modifier_list(value: Any, variables: Variables, start: int = 0) -> list[Modifier]:
    modifiers = []
    errors: list[RecipeError] = []
    for offset, (name, fields) in enumerate(_entries(value)):
        index = start + offset
        try:
            modifiers.append(build_modifier(name, fields, variables))
        except RecipeError as exc:
            errors.append(exc.with_context(index=index, modifier=name))
    raise_collected(errors)
    return modifiers


def build_modifier(name: str, fields: Any, variables: Variables | None = None) -> Modifier:
    """One typed, checked modifier from its recipe name and raw fields."""
    if name == "?" or not isinstance(fields, dict):
        raise RecipeError(
            "a modifier must be `type: Name` plus fields, `!Name {fields}` or `Name: {fields}`, "
            f"got {fields!r}"
        )
    cls = resolve_modifier(name)
    variables = variables or Variables({})
    values = {}
    errors: list[RecipeError] = []
    for key, raw in fields.items():
        try:
            values[str(key)] = variables.substitute(raw)
        except RecipeError as exc:
            errors.append(exc.with_context(field=str(key)))
    raise_collected(errors)
    modifier = cls(**build_fields(cls, values))
    aliases: dict[str, str] = cls.field_aliases
    # Errors found later (on a model) name the field as the file does.
    modifier._written_as = {aliases[k]: k for k in values if k in aliases}  # type: ignore[attr-defined]
    modifier.check()
    return modifier
