"""Structure edits as data: which layers of an architecture changed width, and redoing that.

Structured pruning (zoo/modifiers/pruning_structured.py) physically shrinks conv channels,
linear neurons, batch norms and attention heads, and records nothing. Instead of asking
every structural technique to log itself, the export compares the model with a freshly
built skeleton of its architecture and records the widths that differ (`widths_of`);
loading builds the skeleton and resizes those modules (`resize`) before loading weights.
As a transform of the format (`resize`: {"modules": {module: widths}}): `record` / `replay`.
New modules keep the skeleton's kind and hyper-parameters (kernel, stride, bias, eps...);
their values do not matter, the saved weights replace them.

Works on int8 models too: quantized conv/linear modules expose the same width attributes,
a `QuantWrapper` is looked through, and a batch norm folded into its conv (a fused group
of the quantization plan) takes that conv's output width.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from zoo.compress.transform import Recording
from zoo.errors import CompressedFormatError

Widths = dict[str, int]
_KEYS = ("in", "out", "features", "heads")
_PAIRS = (("in_channels", "out_channels"), ("in_features", "out_features"))


def widths(module: nn.Module) -> Widths:
    """The widths of a conv / linear / norm / attention module (float or int8); {} if none."""
    for a, b in _PAIRS:
        if isinstance(getattr(module, a, None), int) and isinstance(getattr(module, b, None), int):
            return {"in": int(getattr(module, a)), "out": int(getattr(module, b))}
    found: Widths = {}
    if isinstance(module, nn.modules.batchnorm._NormBase):
        found["features"] = int(module.num_features)
    heads = getattr(module, "num_attention_heads", None)
    if isinstance(heads, int) and hasattr(module, "attention_head_size"):
        found["heads"] = heads
    return found


def _counterpart(model: nn.Module, name: str, fused_with: dict[str, str]) -> Widths | None:
    """Widths of the module that plays `name`'s role in `model` (None if it has none)."""
    if name in fused_with:  # a norm folded into its conv: same width as the conv output
        head = _counterpart(model, fused_with[name], {})
        return {"features": head["out"]} if head and "out" in head else None
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    inner = getattr(module, "module", None)
    if not widths(module) and isinstance(inner, nn.Module):  # QuantWrapper(layer)
        module = inner
    return widths(module)


def widths_of(
    model: nn.Module, reference: nn.Module, fused: list[list[str]] | None = None
) -> dict[str, Widths]:
    """Module name -> widths, for every module whose widths differ from `reference`'s."""
    fused_with = {member: group[0] for group in fused or [] for member in group[1:]}
    changed: dict[str, Widths] = {}
    for name, module in reference.named_modules():
        expected = widths(module)
        if not name or not expected:
            continue
        actual = _counterpart(model, name, fused_with)
        if actual is None:
            continue
        diff = {k: v for k, v in actual.items() if k in expected and v != expected[k]}
        if diff:
            changed[name] = {k: actual[k] for k in expected if k in actual}
    return changed


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _resized(module: nn.Module, want: Widths, name: str) -> nn.Module | None:
    """A module like `module` with the widths in `want`; None when only attributes change."""
    current = widths(module)
    size = {**current, **want}
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return type(module)(
            size["in"],
            size["out"],
            module.kernel_size,  # type: ignore[arg-type]
            stride=module.stride,  # type: ignore[arg-type]
            padding=module.padding,  # type: ignore[arg-type]
            dilation=module.dilation,  # type: ignore[arg-type]
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    if isinstance(module, nn.Linear):
        return nn.Linear(size["in"], size["out"], bias=module.bias is not None)
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return type(module)(
            size["features"],
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
    if "heads" in want:
        # BERT attention infers heads from tensor shapes; its bookkeeping must agree
        # (pruning_structured.remove_heads sets the same two attributes).
        head_size = int(module.attention_head_size)  # type: ignore[arg-type]
        module.__dict__["num_attention_heads"] = want["heads"]
        module.__dict__["all_head_size"] = want["heads"] * head_size
        return None
    raise CompressedFormatError(
        f"cannot resize {name!r}: a {type(module).__name__} (resizable: Conv1d/2d/3d, Linear, "
        "BatchNorm, BERT self-attention)"
    )


def resize(model: nn.Module, changed: dict[str, Any]) -> nn.Module:
    """Give a fresh float `model` the widths recorded by `widths_of`, in place."""
    for name, want in changed.items():
        if not isinstance(want, dict) or not set(want) <= set(_KEYS):
            raise CompressedFormatError(f"malformed resize entry for {name!r}: {want!r}")
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise CompressedFormatError(
                f"the architecture has no module {name!r} to resize; the export was made "
                "from another version of it"
            ) from None
        new = _resized(module, {k: int(v) for k, v in want.items()}, name)
        if new is not None:
            _set_submodule(model, name, new.train(module.training))
    return model


def record(rec: Recording) -> dict[str, Any] | None:
    rec.widths = widths_of(rec.model, rec.reference, rec.plan.fused if rec.plan else None)
    return {"type": "resize", "modules": rec.widths} if rec.widths else None


def replay(model: nn.Module, transform: dict[str, Any]) -> None:
    resize(model, transform["modules"])
