"""Check YAML values against a modifier dataclass's field annotations.

The annotations are the schema (one place per fact): float, int, bool, str,
Literal[...], list[X], tuple, dict[str, X], unions (``X | None``) and Any.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from zoo.errors import RecipeError, raise_collected, suggest

#: A plain decimal number in exponent form that YAML 1.1 leaves a string (``8e-5``, ``1E4``).
_YAML11_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class _Mismatch(Exception):
    """Internal: a value does not fit a type (message says what was expected)."""


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true/false"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "anything"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """`value` converted to `tp` (int -> float, list -> tuple); raises _Mismatch."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_NUMBER.fullmatch(value.strip()):
            # YAML 1.1 reads 8e-5 (no dot) as a string; SparseML converts it, so do we.
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is Literal:
        if value in get_args(tp):
            return value
    elif origin in (list, tuple):
        if isinstance(value, list | tuple):
            args = get_args(tp)
            item = args[0] if args else Any
            items = [coerce(v, item) for v in value]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, dict):
            args = get_args(tp)
            item = args[1] if args else Any
            return {str(k): coerce(v, item) for k, v in value.items()}
    elif origin in (Union, types.UnionType):
        for option in get_args(tp):
            try:
                return coerce(value, option)
            except _Mismatch:
                continue
    raise _Mismatch(f"expected {_describe(tp)}, got {type(value).__name__} {value!r}")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def build_fields(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `cls` from recipe fields; raises RecipeError naming the field."""
    types_ = field_types(cls)
    aliases: dict[str, str] = getattr(cls, "field_aliases", {})
    ignored: frozenset[str] = getattr(cls, "ignored_fields", frozenset())
    unsupported: dict[str, str] = getattr(cls, "unsupported_fields", {})
    default_only: dict[str, Any] = getattr(cls, "default_only_fields", {})
    kwargs: dict[str, Any] = {}
    errors: list[RecipeError] = []
    for key, value in raw.items():
        name = aliases.get(key, key)
        if key in default_only:
            if value != default_only[key]:
                errors.append(
                    RecipeError(
                        f"{key}: {value!r} is known, not supported here: only "
                        f"{default_only[key]!r} (the default, which this zoo always does) is",
                        field=key,
                    )
                )
            continue
        if name in ignored or key in ignored:
            continue
        if key in unsupported:
            errors.append(
                RecipeError(f"{key!r} is known, not supported here: {unsupported[key]}.", field=key)
            )
            continue
        if name not in types_:
            valid = sorted(types_)
            errors.append(
                RecipeError(
                    f"unknown field {key!r}.{suggest(key, valid)} "
                    f"Valid fields: {', '.join(valid)}.",
                    field=key,
                )
            )
            continue
        try:
            kwargs[name] = coerce(value, types_[name])
        except _Mismatch as exc:
            errors.append(RecipeError(str(exc), field=key))
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and not any(f.name == aliases.get(k, k) for k in raw)
    ]
    for name in missing:
        errors.append(RecipeError(f"required field is missing (type {cls.__name__})", field=name))
    raise_collected(errors)
    return kwargs
