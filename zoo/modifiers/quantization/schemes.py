"""llm-compressor's quantization schemes: the presets and `config_groups`, read as written.

llm-compressor (compressed-tensors) names a scheme by a preset (``scheme: W4A16``), by a
preset mapped to targets (``scheme: {W4A16: [Linear]}``) or spells it out in
``config_groups`` (``weights`` / ``input_activations`` argument dicts). This module turns
any of them into the one thing this CPU runs, or refuses it by name:

- weight-only int (``input_activations: null``): W8A16 and W4A16, symmetric, in groups of
  128 input columns as compressed-tensors defines both presets (the grid of
  zoo/modifiers/quantization/weight_only.py);
- W8A8 int8: per-channel symmetric int8 weights with int8 activations, ``dynamic: true``
  on torch's dynamic int8 Linear, ``dynamic: false`` calibrated static int8.

Two differences are inherent to torch's x86 int8 kernels, and documented rather than
refused because the preset itself asks for them: dynamic activations get one scale per
batch (llm-compressor's W8A8 preset asks for one per token), and activation codes are
uint8 with a zero point where llm-compressor writes ``symmetric: true``.
Everything else (FP8, NVFP4, MXFP4, int4 weights with int8 activations, asymmetric or
MSE-searched weights, output activations) is "known, not supported here".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from zoo.errors import RecipeError
from zoo.modifiers.quantization.weight_only import WeightGrid

Activations = Literal["none", "dynamic", "static"]

_INT8_CHANNEL = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"}
_GROUP128 = {"type": "int", "symmetric": True, "strategy": "group", "group_size": 128}
#: compressed-tensors' presets that run here, as the argument dicts they stand for.
PRESETS: dict[str, dict[str, Any]] = {
    # compressed-tensors' WxA16 presets quantize weights in groups of 128 input columns
    "W8A16": {"weights": {"num_bits": 8, **_GROUP128}},
    "W4A16": {"weights": {"num_bits": 4, **_GROUP128}},
    "W8A8": {
        "weights": _INT8_CHANNEL,
        "input_activations": {
            "num_bits": 8,
            "type": "int",
            "symmetric": True,
            "strategy": "token",
            "dynamic": True,
        },
    },
}
PRESETS["INT8"] = PRESETS["W8A8"]

_GPU = "needs a GPU with {} kernels; this zoo runs int8 and weight-only int on the CPU"
#: Presets llm-compressor has that this CPU cannot run, and why.
REFUSED_PRESETS: dict[str, str] = {
    "FP8": _GPU.format("FP8 (Hopper / Ada)"),
    "FP8_DYNAMIC": _GPU.format("FP8 (Hopper / Ada)"),
    "FP8_BLOCK": _GPU.format("block-wise FP8"),
    "W8A8_FP8": _GPU.format("FP8 (Hopper / Ada)"),
    "NVFP4": _GPU.format("NVFP4 (Blackwell)"),
    "NVFP4A16": _GPU.format("NVFP4 (Blackwell)"),
    "MXFP4": _GPU.format("MXFP4"),
    "MXFP4A16": _GPU.format("MXFP4"),
    "MXFP8": _GPU.format("MXFP8"),
    "W4AFP8": _GPU.format("FP8"),
    "W4A8": "int4 weights with int8 activations have no CPU kernel here; use W4A16 or W8A8",
    "W4A16_ASYM": "asymmetric int4 weights (zero points) are not implemented here; use W4A16",
    "UNQUANTIZED": "an unquantized scheme quantizes nothing; drop the modifier",
}


@dataclass(frozen=True)
class ResolvedScheme:
    """A scheme as this zoo runs it."""

    name: str  # the preset's name, or "config_groups"
    grid: WeightGrid
    activations: Activations
    targets: list[str]
    actorder: str | bool | None = None  # weights' actorder from config_groups (GPTQ)

    @property
    def weight_only(self) -> bool:
        return self.activations == "none"


def _refuse(field: str, what: str) -> RecipeError:
    return RecipeError(f"{what} is known, not supported here", field=field)


def _weight_grid(args: Any, where: str, with_activations: bool) -> WeightGrid:
    if not isinstance(args, dict):
        raise RecipeError(f"{where}.weights must be a mapping of quantization args", field=where)
    kind = args.get("type", "int")
    if kind != "int":
        raise _refuse(where, f"{kind} weights ({where}.weights.type) {_GPU.format(kind)}:")
    bits = args.get("num_bits", 8)
    if bits not in (4, 8) or (with_activations and bits != 8):
        raise _refuse(
            where,
            f"{bits}-bit weights{' with int8 activations' if with_activations else ''} "
            f"({where}.weights.num_bits): here weight-only takes 4 or 8 bits, W8A8 takes 8;",
        )
    if args.get("symmetric", True) is not True:
        raise _refuse(where, f"asymmetric weights ({where}.weights.symmetric: false):")
    if args.get("dynamic", False):
        raise _refuse(where, f"dynamic weight scales ({where}.weights.dynamic):")
    observer = args.get("observer")
    if observer not in (None, "minmax", "memoryless_minmax", "static_minmax"):
        raise _refuse(
            where,
            f"the {observer!r} observer ({where}.weights.observer; the scales here are min-max):",
        )
    strategy = args.get("strategy", "tensor")
    if strategy == "channel":
        return WeightGrid(bits)
    if strategy == "group" and not with_activations:
        size = args.get("group_size")
        if not isinstance(size, int) or size < 1:
            raise RecipeError(
                f"{where}.weights.group_size must be a positive integer for strategy group, "
                f"got {size!r}",
                field=where,
            )
        return WeightGrid(bits, size)
    raise _refuse(
        where,
        f"weight strategy {strategy!r} ({where}.weights.strategy; here: channel, or group "
        "for weight-only):",
    )


def _activations(args: Any, where: str) -> Activations:
    if args is None:
        return "none"
    if not isinstance(args, dict):
        raise RecipeError(f"{where}.input_activations must be a mapping or null", field=where)
    kind, bits = args.get("type", "int"), args.get("num_bits", 8)
    if kind != "int" or bits != 8:
        raise _refuse(where, f"{bits}-bit {kind} activations ({where}.input_activations):")
    if args.get("dynamic", False):
        return "dynamic"  # per token or per tensor: one scale per batch here (module doc)
    if args.get("strategy", "tensor") != "tensor":
        raise _refuse(
            where,
            f"static activations with strategy {args.get('strategy')!r} "
            f"({where}.input_activations; static here is per tensor):",
        )
    return "static"


def _group(name: str, group: dict[str, Any], targets: list[str]) -> ResolvedScheme:
    unknown = set(group) - {
        "weights",
        "input_activations",
        "output_activations",
        "targets",
        "format",
    }
    if unknown:
        raise RecipeError(f"{name}: unknown keys {sorted(unknown)}", field=name)
    if group.get("output_activations") is not None:
        raise _refuse(name, f"output activation quantization ({name}.output_activations):")
    activations = _activations(group.get("input_activations"), name)
    if "weights" not in group or group["weights"] is None:
        raise _refuse(name, f"activation-only quantization ({name} has no weights):")
    grid = _weight_grid(group["weights"], name, activations != "none")
    actorder = group["weights"].get("actorder") if isinstance(group["weights"], dict) else None
    return ResolvedScheme(name, grid, activations, targets, actorder)


def resolve_scheme(
    scheme: str | dict[str, Any] | None,
    config_groups: dict[str, Any] | None,
    targets: list[str],
) -> ResolvedScheme | None:
    """The scheme a modifier's `scheme` / `config_groups` fields describe (None: neither)."""
    if scheme is not None and config_groups is not None:
        raise RecipeError("give scheme or config_groups, not both", field="scheme")
    if scheme is not None:
        if isinstance(scheme, dict):
            if len(scheme) != 1:
                raise _refuse("scheme", f"several schemes in one modifier ({sorted(scheme)}):")
            ((name, scheme_targets),) = scheme.items()
            targets = [scheme_targets] if isinstance(scheme_targets, str) else list(scheme_targets)
        else:
            name = scheme
        key = str(name).upper()
        if key in REFUSED_PRESETS:
            raise RecipeError(
                f"scheme {name!r} is known, not supported here: {REFUSED_PRESETS[key]}",
                field="scheme",
            )
        if key not in PRESETS:
            raise RecipeError(
                f"unknown scheme {name!r}; presets: {', '.join(sorted(PRESETS))} (run here), "
                f"{', '.join(sorted(REFUSED_PRESETS))} (known, not supported here)",
                field="scheme",
            )
        return _group(key, PRESETS[key], targets)
    if config_groups is None:
        return None
    if not config_groups:
        raise RecipeError("config_groups is empty", field="config_groups")
    resolved: list[ResolvedScheme] = []
    for name, group in config_groups.items():
        if not isinstance(group, dict):
            raise RecipeError(f"config_groups.{name} must be a mapping", field="config_groups")
        try:
            resolved.append(
                _group(f"config_groups.{name}", group, list(group.get("targets") or targets))
            )
        except RecipeError as exc:
            exc.field = "config_groups"
            raise
    first = resolved[0]
    if any((r.grid, r.activations) != (first.grid, first.activations) for r in resolved[1:]):
        raise _refuse("config_groups", "different schemes for different layers (mixed precision):")
    every = [t for r in resolved for t in r.targets]
    return ResolvedScheme("config_groups", first.grid, first.activations, every, first.actorder)
