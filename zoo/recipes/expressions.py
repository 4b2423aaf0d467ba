"""Variables in recipes: ``${expr}`` (native) and ``eval(expr)`` (SparseML legacy).

Expressions are evaluated by walking their AST with a whitelist (numbers, variable names,
arithmetic, comparisons, a few pure functions). Python's `eval` is never used: a recipe is
data downloaded from elsewhere and must not run code.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from zoo.errors import RecipeError

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "ceil": math.ceil,
    "floor": math.floor,
}
_MAX_EXPONENT = 64  # keeps `10 ** 10 ** 10` from eating the machine

_FULL = re.compile(r"^\s*(?:\$\{(?P<native>.*)\}|eval\((?P<legacy>.*)\))\s*$", re.DOTALL)
_EMBEDDED = re.compile(r"\$\{([^}]*)\}")


def evaluate(expression: str, lookup: Callable[[str], Any]) -> Any:
    """Value of an arithmetic `expression`; names are resolved with `lookup`."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise RecipeError(f"cannot parse expression {expression!r}: {exc.msg}") from None
    return _eval(tree.body, lookup, expression)


def _eval(node: ast.AST, lookup: Callable[[str], Any], source: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
        return node.value
    if isinstance(node, ast.Name):
        return lookup(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left, lookup, source)
        right = _eval(node.right, lookup, source)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise RecipeError(f"exponent too large in {source!r}")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, lookup, source))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _eval(node.left, lookup, source)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, lookup, source)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        test = _eval(node.test, lookup, source)
        return _eval(node.body if test else node.orelse, lookup, source)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_eval(a, lookup, source) for a in node.args]
        return _FUNCTIONS[node.func.id](*args)
    raise RecipeError(
        f"expression {source!r} uses {type(node).__name__}, which recipes do not allow; "
        "use numbers, variable names, + - * / // % **, comparisons and "
        f"{', '.join(sorted(_FUNCTIONS))}"
    )


class Variables:
    """Recipe variables; each may itself be an expression over the others."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = dict(raw)
        self._done: dict[str, Any] = {}
        self._busy: set[str] = set()

    def names(self) -> list[str]:
        return list(self._raw)

    def get(self, name: str) -> Any:
        if name in self._done:
            return self._done[name]
        if name not in self._raw:
            from zoo.errors import suggest

            raise RecipeError(
                f"undefined variable {name!r}.{suggest(name, self._raw)} "
                f"Defined: {', '.join(self._raw) or '(none)'}."
            )
        if name in self._busy:
            raise RecipeError(f"variable {name!r} refers to itself (cycle)")
        self._busy.add(name)
        try:
            value = self.substitute(self._raw[name])
        except RecipeError as exc:
            raise exc.with_context(field=f"variables.{name}") from None
        finally:
            self._busy.discard(name)
        self._done[name] = value
        return value

    def resolved(self) -> dict[str, Any]:
        return {name: self.get(name) for name in self._raw}

    def substitute(self, value: Any) -> Any:
        """`value` with every ``${...}`` / ``eval(...)`` in it evaluated (recursively)."""
        if isinstance(value, str):
            full = _FULL.match(value)
            if full:
                return evaluate(full.group("native") or full.group("legacy") or "", self.get)
            if "${" in value:
                return _EMBEDDED.sub(lambda m: str(evaluate(m.group(1), self.get)), value)
            return value
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        return value
