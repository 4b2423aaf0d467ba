r"""Which parameters a modifier acts on: names, `re:` patterns, `__ALL_PRUNABLE__`.

A selector is one string or a list of them; each entry is one of

- ``__ALL_PRUNABLE__``: the ``weight`` of every Linear and Conv1d/2d/3d layer. The final
  classifier IS included, as in SparseML, so published SparseZoo recipes prune the same
  tensors here as there; exclude it with an explicit list or a regex if you need to.
- ``__ALL__``: every parameter.
- ``re:PATTERN``: parameters whose full name matches PATTERN from its start (``re.match``,
  SparseML's semantics), e.g. ``re:.*conv.*weight``; a pattern that names modules
  (``re:encoder.layer.0.attention.self.query``) selects their ``weight``.
- an exact parameter name (``classifier.weight``), an exact module name (``classifier``,
  meaning its weight) or a module class name (``Linear``, llm-compressor's ``targets``).
- a module without a weight of its own, by name or by a ``re:`` pattern that matches its
  whole name (llm-compressor's ``re:model.layers.\d+$``, a transformer block): the weights
  of the Linear and Conv layers inside it.

An entry that selects nothing is an error naming the entry: a typo should not silently
prune nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from torch import nn

from zoo.errors import RecipeError

ALL_PRUNABLE = "__ALL_PRUNABLE__"
ALL = "__ALL__"
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            yield name, module


def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def _entries(selector: str | list[str]) -> list[str]:
    return [selector] if isinstance(selector, str) else list(selector)


def _module_weights(
    modules: dict[str, nn.Module], name: str, params: dict[str, nn.Parameter]
) -> list[str]:
    """A module's own weight, or, for a block without one, its Linear and Conv weights."""
    if _weight_name(name) in params:
        return [_weight_name(name)]
    inside = [f"{name}.{inner}" for inner, _ in prunable_modules(modules[name]) if inner]
    return [_weight_name(n) for n in inside if _weight_name(n) in params]


def _match_entry(model: nn.Module, entry: str, params: dict[str, nn.Parameter]) -> list[str]:
    modules = dict(model.named_modules())
    if entry == ALL_PRUNABLE:
        return [_weight_name(n) for n, _ in prunable_modules(model)]
    if entry == ALL:
        return list(params)
    if entry.startswith("re:"):
        pattern = re.compile(entry[3:])
        names = [n for n in params if pattern.match(n)]
        for n in modules:
            if n and pattern.fullmatch(n):
                names += _module_weights(modules, n, params)
        return names
    if entry in params:
        return [entry]
    if entry in modules:
        return _module_weights(modules, entry, params)
    return [
        _weight_name(n)
        for n, m in modules.items()
        if type(m).__name__ == entry and _weight_name(n) in params
    ]


def select_params(
    model: nn.Module, selector: str | list[str], *, owner: str | None = None
) -> dict[str, nn.Parameter]:
    """Parameters chosen by `selector`, in model order; raises if an entry matches nothing."""
    params = dict(model.named_parameters())
    chosen: set[str] = set()
    for entry in _entries(selector):
        names = _match_entry(model, entry, params)
        if not names:
            raise RecipeError(
                f"params entry {entry!r} matches no parameter of the model "
                f"({type(model).__name__}, {len(params)} parameters)",
                modifier=owner,
                field="params",
            )
        chosen.update(names)
    return {n: p for n, p in params.items() if n in chosen}


def owning_module(model: nn.Module, param_name: str) -> nn.Module:
    """The module that holds parameter `param_name` (``a.b.weight`` -> module ``a.b``)."""
    module_name, _, _ = param_name.rpartition(".")
    return model.get_submodule(module_name) if module_name else model


def select_except(
    model: nn.Module, selector: str | list[str], ignore: list[str], *, owner: str | None = None
) -> dict[str, nn.Parameter]:
    """`select_params` minus what `ignore` selects (llm-compressor's ``ignore``: an entry
    may name layers this model lacks, as ``lm_head`` in a recipe written for many models)."""
    params = select_params(model, selector, owner=owner)
    dropped: set[str] = set()
    for entry in ignore:
        try:
            dropped |= set(select_params(model, entry))
        except RecipeError:
            continue
    return {n: p for n, p in params.items() if n not in dropped}
