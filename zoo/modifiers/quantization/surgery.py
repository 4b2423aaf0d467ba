"""Graph surgery: which conv/linear layers to quantize, which runs fuse, and where the
quant/dequant stubs go (inline in int8-only Sequentials, hooked siblings, QuantWrapper);
`rebuild` redoes a recorded plan on a fresh float skeleton."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from zoo.modifiers.quantization.engine import quiet, use_backend
from zoo.modifiers.quantization.plan import QuantPlan, stub_name
from zoo.modifiers.quantization.torch_private import fused_module_type

COMPUTE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
# Layers that accept a quantized tensor once converted, so a Sequential made only of these
# can run end to end in int8 without dequantizing in between.
_INT8_SAFE: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)
_FUSION_PATTERNS: tuple[tuple[type[nn.Module], ...], ...] = (
    (nn.Conv2d, nn.BatchNorm2d, nn.ReLU),
    (nn.Conv1d, nn.BatchNorm1d, nn.ReLU),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.ReLU),
    (nn.Conv1d, nn.ReLU),
    (nn.Linear, nn.ReLU),
)


def is_fused(module: nn.Module) -> bool:
    return isinstance(module, fused_module_type())


def compute_modules(
    model: nn.Module, targets: Iterable[str] | None = None, ignore: Iterable[str] = ()
) -> list[str]:
    """Names of the conv/linear modules to quantize.

    `targets`: module names, or parameter names (``a.weight`` means module ``a``) as a
    recipe's ``params`` selector resolves them; None means every conv and linear.
    `ignore`: module names or ``re:`` patterns kept in float.
    """
    names = [n for n, m in model.named_modules() if n and isinstance(m, COMPUTE_TYPES)]
    if targets is not None:
        wanted = {t[: -len(".weight")] if t.endswith(".weight") else t for t in targets}
        names = [n for n in names if n in wanted]
    patterns = [re.compile(i[3:]) for i in ignore if i.startswith("re:")]
    exact = {i for i in ignore if not i.startswith("re:")}
    return [n for n in names if n not in exact and not any(p.match(n) for p in patterns)]


def fusion_groups(model: nn.Module, selected: Iterable[str]) -> list[list[str]]:
    """Runs of consecutive Sequential children that fuse, led by a selected conv/linear."""
    chosen = set(selected)
    groups: list[list[str]] = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        i = 0
        while i < len(children):
            for pattern in _FUSION_PATTERNS:
                run = children[i : i + len(pattern)]
                if len(run) == len(pattern) and all(
                    type(m) is t for (_, m), t in zip(run, pattern, strict=True)
                ):
                    names = [f"{parent_name}.{n}" if parent_name else n for n, _ in run]
                    if names[0] in chosen:
                        groups.append(names)
                        i += len(pattern) - 1
                    break
            i += 1
    return groups


def _int8_region(module: nn.Module, chosen: set[str], prefix: str) -> bool:
    """True if a Sequential runs wholly in int8: every leaf int8-safe, every conv/linear chosen."""
    has_compute = False
    for name, sub in module.named_modules(prefix=prefix):
        if sub is module or (isinstance(sub, nn.Sequential) and not is_fused(sub)):
            continue
        if is_fused(sub):
            if name not in chosen:
                return False
            has_compute = True
            continue
        if any(name.startswith(f"{f}.") for f in chosen):  # inside a fused module
            continue
        if isinstance(sub, COMPUTE_TYPES):
            if name not in chosen:
                return False
            has_compute = True
        elif not isinstance(sub, _INT8_SAFE):
            return False
    return has_compute


def _inline_stubs(seq: nn.Sequential) -> bool:
    """Put a QuantStub first and a DeQuantStub last *inside* a Sequential, by name.

    Unlike `QuantWrapper`, this leaves every parameter name of the region unchanged
    (``features.0.0.weight`` stays that), so modifiers that address parameters by name,
    such as pruning masks, keep working after quantization starts. Positional indexing of
    the Sequential shifts by one; names do not.
    """
    from torch.ao.quantization import DeQuantStub, QuantStub

    if "quant" in seq._modules or "dequant" in seq._modules:
        return False
    items = [("quant", QuantStub()), *seq._modules.items(), ("dequant", DeQuantStub())]
    seq._modules.clear()
    seq._modules.update(items)
    return True


def _wrap_leaf(model: nn.Module, name: str) -> None:
    from torch.ao.quantization import QuantWrapper

    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, QuantWrapper(getattr(parent, child)))


class _StubHook:
    """Runs a stub kept on the layer's parent before (quant) or after (dequant) the layer.

    An object, not a closure: `deepcopy` of the model copies it with the parent it points
    to, and `torch.ao` carries hooks over when it swaps the layer for its QAT / int8 twin.
    """

    def __init__(self, parent: nn.Module, attr: str) -> None:
        self.parent = parent
        self.attr = attr

    def __call__(self, module: nn.Module, args: Any, output: Any = None) -> Any:
        stub = getattr(self.parent, self.attr)
        if output is None:  # forward pre-hook
            return (stub(args[0]), *args[1:])
        return stub(output)


def _hook_leaf(model: nn.Module, name: str) -> bool:
    """Give a layer quant/dequant stubs as siblings plus hooks, keeping its parameter names
    (``classifier.weight`` stays that). Not possible inside containers, whose iteration
    would run the stubs as layers; returns False there."""
    from torch.ao.quantization import DeQuantStub, QuantStub

    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential | nn.ModuleList | nn.ModuleDict):
        return False
    quant, dequant = stub_name(child, "quant"), stub_name(child, "dequant")
    if hasattr(parent, quant) or hasattr(parent, dequant):
        return False
    parent.add_module(quant, QuantStub())
    parent.add_module(dequant, DeQuantStub())
    layer = getattr(parent, child)
    layer.register_forward_pre_hook(_StubHook(parent, quant))
    layer.register_forward_hook(_StubHook(parent, dequant))
    return True


def wrap_regions(model: nn.Module, chosen: set[str], plan: QuantPlan) -> None:
    """Insert quant/dequant stubs, keeping parameter names wherever possible: inline in
    int8-only Sequentials, as hooked siblings of single layers, else (a layer directly in
    a container) with `QuantWrapper`. Records where in `plan`."""

    def visit(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            full = f"{prefix}.{name}" if prefix else name
            if (
                isinstance(child, nn.Sequential)
                and not is_fused(child)
                and _int8_region(child, chosen, full)
                and _inline_stubs(child)
            ):
                plan.inlined.append(full)
            elif full in chosen:
                if _hook_leaf(model, full):
                    plan.hooked.append(full)
                else:
                    _wrap_leaf(model, full)
                    plan.wrapped.append(full)
            else:
                visit(child, full)

    visit(model, "")


def restore_stubs(model: nn.Module, plan: QuantPlan) -> None:
    """Redo a plan's stub insertion on a freshly fused model (used when loading)."""
    for name in plan.inlined:
        seq = model.get_submodule(name)
        assert isinstance(seq, nn.Sequential)
        _inline_stubs(seq)
    for name in plan.hooked:
        _hook_leaf(model, name)
    for name in plan.wrapped:
        _wrap_leaf(model, name)


def chosen_after_fusion(groups: list[list[str]], selected: list[str]) -> set[str]:
    # A fused group lives at its first member's name; the others became Identity.
    absorbed = {n for g in groups for n in g[1:]}
    return {n for n in selected if n not in absorbed}


def rebuild(model: nn.Module, plan: QuantPlan) -> None:
    """Static and QAT models convert to the same int8 modules: redo fusion and stubs,
    insert placeholder observers and convert; the loaded state replaces every qparam."""
    from torch.ao.quantization import QConfig, fuse_modules, prepare
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    from zoo.modifiers.quantization.flows import convert

    use_backend()
    placeholder = QConfig(
        activation=MinMaxObserver.with_args(dtype=torch.quint8),
        weight=PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric
        ),
    )
    with quiet():
        if plan.fused:
            fuse_modules(model, plan.fused, inplace=True)
        restore_stubs(model, plan)
        for name in plan.qconfig_owners():
            model.get_submodule(name).qconfig = placeholder  # type: ignore[assignment]
        prepare(model, inplace=True)
    convert(model)
